cd "$(dirname "$0")"
Q='"x-queue-type":"quorum"'
run() { bash run.sh outq_$1.jsonl "$2" ${3:-2}; }
run ii-classic-slow '{"name":"ii-classic-slow","quiesce":true,"consumers":[{"prefetch":10,"policy":"ack","delayMs":20}]}'
run ii-quorum-slow '{"name":"ii-quorum-slow","quiesce":true,"qargs":{'$Q'},"consumers":[{"prefetch":10,"policy":"ack","delayMs":20}]}'
run ii-classic-unlimited '{"name":"ii-classic-unlimited-prefetch","quiesce":true,"consumers":[{"prefetch":0,"policy":"ack","delayMs":300}]}'
run iii-classic '{"name":"iii-classic","quiesce":true,"consumers":[{"prefetch":50,"policy":"hold"},{"prefetch":10,"policy":"ack","delayMs":5}]}'
run iii-quorum '{"name":"iii-quorum","quiesce":true,"qargs":{'$Q'},"consumers":[{"prefetch":50,"policy":"hold"},{"prefetch":10,"policy":"ack","delayMs":5}]}'
run iii-leak '{"name":"iii-leak-classic","quiesce":true,"consumers":[{"prefetch":50,"policy":"holdEvery","k":300,"delayMs":5}]}'
run iv-classic '{"name":"iv-classic","quiesce":true,"consumers":[{"prefetch":10,"policy":"nackRequeueEvery","k":50,"delayMs":5}]}'
run iv-quorum '{"name":"iv-quorum","quiesce":true,"qargs":{'$Q'},"consumers":[{"prefetch":10,"policy":"nackRequeueEvery","k":50,"delayMs":5}]}'
run vi-priority '{"name":"vi-priority","quiesce":true,"qargs":{"x-max-priority":10},"priority":true,"consumers":[{"prefetch":10,"policy":"ack","delayMs":20}]}'
run vii-ttl '{"name":"vii-ttl","quiesce":true,"qargs":{"x-message-ttl":2000},"ttl":2000,"consumers":[{"prefetch":10,"policy":"ack","delayMs":20}]}'
run vii-ttl-quorum '{"name":"vii-ttl-quorum","quiesce":true,"qargs":{'$Q',"x-message-ttl":2000},"ttl":2000,"consumers":[{"prefetch":10,"policy":"ack","delayMs":20}]}'
run vii-maxlen-drophead '{"name":"vii-maxlen-drophead","quiesce":true,"qargs":{"x-max-length":500},"stopProducerBeforeFence":true,"consumers":[{"prefetch":10,"policy":"ack","delayMs":20}]}'
run vii-maxlen-reject '{"name":"vii-maxlen-reject","quiesce":true,"qargs":{"x-max-length":500,"x-overflow":"reject-publish"},"stopProducerBeforeFence":true,"consumers":[{"prefetch":10,"policy":"ack","delayMs":20}]}'
run viii-dlq '{"name":"viii-dlq","quiesce":true,"dlq":true,"consumers":[{"prefetch":10,"policy":"rejectEvery","k":20,"delayMs":5}]}'
run viii-dlq-quorum '{"name":"viii-dlq-quorum","quiesce":true,"dlq":true,"qargs":{'$Q'},"consumers":[{"prefetch":10,"policy":"rejectEvery","k":20,"delayMs":5}]}'
echo ALLDONE
