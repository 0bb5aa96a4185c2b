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

# XML 1.0 §2.9: standalone="no" is as well-formed as "yes"; baresip always sends it.
run_sipp publish-standalone-yes $S/publish_xml_declaration.xml u1 "$PORT" -s decl-yes -key standalone yes
run_sipp publish-standalone-no $S/publish_xml_declaration.xml u1 "$PORT" -s decl-no -key standalone no
