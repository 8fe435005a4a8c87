cd "$(dirname "$0")"
export MARKER=1
Q='"x-queue-type":"quorum"'
run() { bash run.sh outv2_$1.jsonl "$2" ${3:-3}; }
run drain-classic '{"name":"drain-fast-classic","preload":30000,"runMs":2500,"consumers":[{"prefetch":100,"policy":"ack"},{"prefetch":100,"policy":"ack"}]}'
run drain-quorum '{"name":"drain-fast-quorum","qargs":{'$Q'},"preload":20000,"runMs":2500,"consumers":[{"prefetch":100,"policy":"ack"},{"prefetch":100,"policy":"ack"}]}'
run ii-classic '{"name":"ii-classic","consumers":[{"prefetch":10,"policy":"ack"}]}'
run ii-classic-slow '{"name":"ii-classic-slow","consumers":[{"prefetch":10,"policy":"ack","delayMs":20}]}'
run ii-quorum-slow '{"name":"ii-quorum-slow","qargs":{'$Q'},"consumers":[{"prefetch":10,"policy":"ack","delayMs":20}]}'
run viii-dlq '{"name":"viii-dlq","dlq":true,"consumers":[{"prefetch":10,"policy":"rejectEvery","k":20,"delayMs":5}]}'
run viii-dlq-quorum '{"name":"viii-dlq-quorum","dlq":true,"qargs":{'$Q'},"consumers":[{"prefetch":10,"policy":"rejectEvery","k":20,"delayMs":5}]}'
run vii-ttl '{"name":"vii-ttl","qargs":{"x-message-ttl":2000},"ttl":2000,"consumers":[{"prefetch":10,"policy":"ack","delayMs":20}]}' 2
echo ALLDONE
