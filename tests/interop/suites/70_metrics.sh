# Prometheus metrics, sourced by run.sh: an instance with metrics_listen is scraped before
# and after SIPp traffic, each scrape parsed by prometheus_client's text-format parser
# (in the interop venv), and the counters must have moved by exactly what SIPp sent.
S=tests/interop/sipp
M_PY=${INTEROP_PYTHON:-$ROOT/target/interop-venv/bin/python}

if ! "$M_PY" -c 'import prometheus_client' 2>/dev/null; then
    if [ -n "${CI:-}" ]; then
        fail "metrics: no prometheus_client at $M_PY (.ci/run installs it in target/interop-venv)"
    else
        skip "metrics: no prometheus_client at $M_PY (target/interop-venv/bin/pip install prometheus-client)"
    fi
else
    M_SIP=$(free_port)
    M_HTTP=$(free_port)
    if start_presenced metrics "$M_SIP" \
        --config "$(write_config metrics "metrics_listen = \"127.0.0.1:$M_HTTP\"")" >/dev/null; then
        URL="http://127.0.0.1:$M_HTTP/metrics"
        # Something to watch, published before the first scrape.
        run_sipp metrics-publish-note $S/publish_note.xml u1 "$M_SIP" -s metrics-sub -key note metrics
        "$M_PY" tests/interop/metrics_check.py snapshot "$URL" "$WORK/metrics.0.json" >"$WORK/metrics.0.out" 2>&1
        report_checks "metrics scrape 1" "$WORK/metrics.0.out"
        # Ten PUBLISH life cycles: each is 4 PUBLISHes answered 200 and 2 answered 412.
        sipp_exec metrics-publish $S/publish_lifecycle.xml u1 "$M_SIP" -s metrics-pub -m 10 -l 1
        sipp_result metrics-publish $?
        # One subscription: a SUBSCRIBE answered 200, its NOTIFYs answered by SIPp.
        run_sipp metrics-subscribe $S/subscribe_dialog.xml u1 "$M_SIP" -s metrics-sub -key note metrics
        "$M_PY" tests/interop/metrics_check.py snapshot "$URL" "$WORK/metrics.1.json" >"$WORK/metrics.1.out" 2>&1
        report_checks "metrics scrape 2" "$WORK/metrics.1.out"
        "$M_PY" tests/interop/metrics_check.py delta "$WORK/metrics.0.json" "$WORK/metrics.1.json" \
            'presenced_sip_responses_total{code=200,method=PUBLISH}=40' \
            'presenced_sip_responses_total{code=412,method=PUBLISH}=20' \
            'presenced_publish_total{}=40' \
            'presenced_sip_responses_total{code=200,method=SUBSCRIBE}>=1' \
            'presenced_notify_sent_total{}>=1' \
            'presenced_core_queue_delay_seconds_count{}>=60' \
            'presenced_timer_round_duration_seconds_count{}>=1' \
            >"$WORK/metrics.delta" 2>&1
        report_checks "metrics" "$WORK/metrics.delta" "$WORK/metrics.1.json" "$WORK/metrics/log"
        xcurl metrics-404 404 "http://127.0.0.1:$M_HTTP/other"
        xcurl metrics-405 405 -X POST "http://127.0.0.1:$M_HTTP/metrics"
    else
        fail "presenced with metrics_listen did not start"
    fi
fi
