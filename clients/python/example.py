#!/usr/bin/python3
"""Tidemark's admin API from Python: status, a checkpoint, the list of checkpoints.

Uses the code generated from proto/ (tidemark/v1, clients/python/generate.sh) and Debian's
python3-grpcio. Configured like the tidemark CLI, from the environment:

  TIDEMARK_COORDINATOR   host:port of a coordinator (default localhost:7700)
  TIDEMARK_TLS_CA        CA certificate the coordinator's certificate chains to (PEM)
  TIDEMARK_TLS_CERT, TIDEMARK_TLS_KEY   a client certificate, if the caller has one
  TIDEMARK_TLS_COORDINATOR_NAME         name the coordinator's certificate carries
                                        (default tidemark-coordinator)
  TIDEMARK_TOKEN_FILE    file holding the caller's admin API token (never an argument)

  /usr/bin/python3 clients/python/example.py
"""
import os
import sys

import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tidemark.v1 import admin_pb2, admin_pb2_grpc  # noqa: E402


def read_file(variable):
    path = os.environ.get(variable)
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as err:
        sys.exit(f"cannot read {variable} {path}: {err.strerror}; nothing was sent. Fix the path or its permissions.")


def channel(address):
    if os.environ.get("TIDEMARK_TLS") == "off":  # a development coordinator without TLS
        return grpc.insecure_channel(address)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=read_file("TIDEMARK_TLS_CA"),
        private_key=read_file("TIDEMARK_TLS_KEY"),
        certificate_chain=read_file("TIDEMARK_TLS_CERT"),
    )
    # The coordinator's certificate names its role, not a host: check that name, whatever address
    # was dialled (docs/SECURITY.md#who-is-who-certificate-names-are-roles).
    name = os.environ.get("TIDEMARK_TLS_COORDINATOR_NAME", "tidemark-coordinator")
    return grpc.secure_channel(address, credentials, options=[("grpc.ssl_target_name_override", name)])


def main():
    address = os.environ.get("TIDEMARK_COORDINATOR", "localhost:7700")
    token = read_file("TIDEMARK_TOKEN_FILE")
    metadata = [("authorization", "Bearer " + token.decode().strip().splitlines()[0])] if token else []
    with channel(address) as ch:
        coordinator = admin_pb2_grpc.CoordinatorServiceStub(ch)
        try:
            status = coordinator.Status(admin_pb2.StatusRequest(), metadata=metadata, timeout=30)
            print(f"coordinator {status.coordinator_id}: leader={status.leader}, "
                  f"{len(status.workers)} worker(s), {status.protected_queues} protected queue(s)")

            reply = coordinator.Checkpoint(admin_pb2.CheckpointRequest(wait=True), metadata=metadata, timeout=600)
            outcome = admin_pb2.RoundOutcome.Name(reply.outcome)
            print(f"checkpoint {reply.epoch}: {outcome} in {reply.duration_ms} ms {reply.reason}".rstrip())

            listed = coordinator.ListCheckpoints(admin_pb2.ListCheckpointsRequest(), metadata=metadata, timeout=30)
            for c in listed.checkpoints:
                print(f"  epoch {c.epoch}: {c.queues} queue(s), {c.messages} message(s), {c.body_bytes} byte(s)"
                      f"{' (full)' if c.full else ''}")
            return 0 if reply.outcome == admin_pb2.ROUND_OUTCOME_COMMITTED else 1
        except grpc.RpcError as err:
            # UNAUTHENTICATED: no or a wrong token; PERMISSION_DENIED: the token's role may not;
            # UNAVAILABLE: not reachable, or a TLS problem (CA, certificate name).
            print(f"{address}: {err.code().name}: {err.details()}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
