# usage: . vh.sh create|delete
if [ "$1" = create ]; then
  VH=head-research-$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n'); echo $VH > ./VH
  curl -sf -u guest:guest -X PUT http://localhost:15672/api/vhosts/$VH && curl -sf -u guest:guest -X PUT -H 'content-type: application/json' -d '{"configure":".*","write":".*","read":".*"}' http://localhost:15672/api/permissions/$VH/guest && echo created $VH
else
  VH=$(cat ./VH); curl -sf -u guest:guest -X DELETE http://localhost:15672/api/vhosts/$VH && echo deleted $VH
fi
