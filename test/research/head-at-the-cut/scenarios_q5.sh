cd "$(dirname "$0")"
r() { for i in 1 2; do VH=$(cat VH) timeout 90 node q5_frontier.mjs "$1" >> out5_frontier.jsonl 2>> out5.err || sleep 10; done; }
r '{"name":"frontier-classic"}'
r '{"name":"frontier-quorum","qargs":{"x-queue-type":"quorum"}}'
r '{"name":"frontier-classic-requeue","requeueEvery":97}'
r '{"name":"frontier-quorum-requeue","qargs":{"x-queue-type":"quorum"},"requeueEvery":97}'
echo ALLDONE
