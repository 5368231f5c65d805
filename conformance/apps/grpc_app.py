"""A gRPC app on grpcio (C core), no generated code: a generic handler for
/conformance.Echo/Unary (echoes the request, prefixed with the caller trustgate named
in metadata) and /conformance.Echo/Stream (echoes each message). Run: grpc_app.py PORT"""
import sys
from concurrent import futures

import grpc


def caller(context):
    return dict(context.invocation_metadata()).get("x-service-caller", "-").encode()


def unary(request, context):
    md = dict(context.invocation_metadata())
    if "authorization" in md:
        return b"TOKEN-LEAKED"
    return caller(context) + b":" + request


def stream(request_iterator, context):
    for msg in request_iterator:
        yield caller(context) + b":" + msg


class Handler(grpc.GenericRpcHandler):
    def service(self, details):
        if details.method == "/conformance.Echo/Unary":
            return grpc.unary_unary_rpc_method_handler(unary)
        if details.method == "/conformance.Echo/Stream":
            return grpc.stream_stream_rpc_method_handler(stream)
        return None


if __name__ == "__main__":
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((Handler(),))
    # A port on loopback, or a Unix socket's path.
    where = sys.argv[1]
    server.add_insecure_port(f"127.0.0.1:{where}" if where.isdigit() else f"unix:{where}")
    server.start()
    server.wait_for_termination()
