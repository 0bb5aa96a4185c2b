# SIPp PUBLISH suite (RFC 3903), sourced by run.sh: life cycle and rejects on the main
# instance over UDP and TCP; 423 + Min-Expires on an instance with min_expires = 60.
S=tests/interop/sipp

for t in u1 t1; do
    run_sipp "publish-lifecycle-$t" $S/publish_lifecycle.xml $t "$PORT" -s "life-$t"
    run_sipp "publish-rejects-$t" $S/publish_rejects.xml $t "$PORT" -s "reject-$t"
done

MINEXP_PORT=$(free_port)
if start_presenced minexp "$MINEXP_PORT" --config "$(write_config minexp 'min_expires = 60')" >/dev/null; then
    for t in u1 t1; do
        run_sipp "publish-423-$t" $S/publish_423.xml $t "$MINEXP_PORT" -s "brief-$t"
    done
else
    fail "presenced with min_expires = 60 did not start"
fi
