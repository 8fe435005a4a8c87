cd "$(dirname "$0")"
Q='"x-queue-type":"quorum"'
run() { bash run.sh out_$1.jsonl "$2" ${3:-2}; }
run i-classic '{"name":"i-classic","consumers":[]}'
run ii-classic '{"name":"ii-classic","consumers":[{"prefetch":10,"policy":"ack"}]}' 3
run ii-classic-slow '{"name":"ii-classic-slow","consumers":[{"prefetch":10,"policy":"ack","delayMs":20}]}' 3
run ii-quorum '{"name":"ii-quorum","qargs":{'$Q'},"consumers":[{"prefetch":10,"policy":"ack"}]}' 3
run ii-quorum-slow '{"name":"ii-quorum-slow","qargs":{'$Q'},"consumers":[{"prefetch":10,"policy":"ack","delayMs":20}]}' 3
run iii-classic '{"name":"iii-classic","consumers":[{"prefetch":50,"policy":"hold"},{"prefetch":10,"policy":"ack","delayMs":5}]}'
run iii-quorum '{"name":"iii-quorum","qargs":{'$Q'},"consumers":[{"prefetch":50,"policy":"hold"},{"prefetch":10,"policy":"ack","delayMs":5}]}'
run iv-classic '{"name":"iv-classic","consumers":[{"prefetch":10,"policy":"nackRequeueEvery","k":50,"delayMs":5}]}'
run iv-quorum '{"name":"iv-quorum","qargs":{'$Q'},"consumers":[{"prefetch":10,"policy":"nackRequeueEvery","k":50,"delayMs":5}]}'
run vi-priority '{"name":"vi-priority","qargs":{"x-max-priority":10},"priority":true,"consumers":[{"prefetch":10,"policy":"ack","delayMs":20}]}'
run vii-ttl '{"name":"vii-ttl","qargs":{"x-message-ttl":2000},"ttl":2000,"consumers":[{"prefetch":10,"policy":"ack","delayMs":20}]}'
run vii-ttl-quorum '{"name":"vii-ttl-quorum","qargs":{'$Q'},"ttl":2000,"consumers":[{"prefetch":10,"policy":"ack","delayMs":20}]}' 1
run vii-maxlen-drophead '{"name":"vii-maxlen-drophead","qargs":{"x-max-length":500},"stopProducerBeforeFence":true,"consumers":[{"prefetch":10,"policy":"ack","delayMs":20}]}'
run vii-maxlen-reject '{"name":"vii-maxlen-reject","qargs":{"x-max-length":500,"x-overflow":"reject-publish"},"stopProducerBeforeFence":true,"consumers":[{"prefetch":10,"policy":"ack","delayMs":20}]}'
run viii-dlq '{"name":"viii-dlq","dlq":true,"consumers":[{"prefetch":10,"policy":"rejectEvery","k":20,"delayMs":5}]}'
run viii-dlq-quorum '{"name":"viii-dlq-quorum","dlq":true,"qargs":{'$Q'},"consumers":[{"prefetch":10,"policy":"rejectEvery","k":20,"delayMs":5}]}'
echo ALLDONE
