# Event packages against the "main" presenced that run.sh started on $PORT: MWI
# (message-summary, RFC 3842), BLF (dialog, RFC 4235) with two publishers, and Event
# parameter matching (dialog;sla, 489). Sourced by run.sh; counts into PASSED/FAILED.
#
# The scenarios that expect a 200 before the NOTIFY it causes run over UDP only (see
# mwi.xml). Each SIPp gets its own free local port: SIPp's default scan from 5060 could
# otherwise land on a port another SIP process on the machine sends to.

SIPP_DIR=tests/interop/sipp
run_sipp events-mwi-udp "$SIPP_DIR/mwi.xml" u1 "$PORT" -p "$(free_port)"
run_sipp events-mwi-forbidden-udp "$SIPP_DIR/mwi_forbidden.xml" u1 "$PORT" -p "$(free_port)"
run_sipp events-mwi-forbidden-tcp "$SIPP_DIR/mwi_forbidden.xml" t1 "$PORT" -p "$(free_port)"
run_sipp events-blf-udp "$SIPP_DIR/blf.xml" u1 "$PORT" -p "$(free_port)"
run_sipp events-params-udp "$SIPP_DIR/event_params.xml" u1 "$PORT" -p "$(free_port)"
