# run.sh <outfile> '<json scenario>' reps  -- appends until outfile has `reps` lines; retries failures (broker restarts by others)
out=$1; sc=$2; reps=${3:-3}; tries=0
touch $out
while [ $(wc -l < $out) -lt $reps ] && [ $tries -lt $((reps+4)) ]; do
  r=$(wc -l < $out); tries=$((tries+1))
  s=$(echo "$sc" | python3 -c "import json,sys; d=json.load(sys.stdin); d['rep']=$r; print(json.dumps(d))")
  VH=$(cat ./VH) timeout 90 node ./${SCRIPT:-q2_head.mjs} "$s" >> $out 2>>${out%.jsonl}.err || { echo "run failed $out rep $r at $(date -u +%T)" >> ./failures.log; sleep 15; }
done
