"""The private descriptor pool that exesdb's protocol messages are built in.

The KurrentDB protocol's packages (``event_store.client.*``) are also compiled
into the official client libraries. Building ours in protobuf's default pool
would make exesdb and such a client refuse to load in one process ("duplicate
symbol"), so the generated modules here add their files to this pool instead
(``regenerate.py`` rewrites them so), after the well-known types they import.
"""

from google.protobuf import any_pb2, descriptor_pool, duration_pb2, empty_pb2, timestamp_pb2

POOL = descriptor_pool.DescriptorPool()
for _well_known in (any_pb2, duration_pb2, empty_pb2, timestamp_pb2):
    POOL.AddSerializedFile(_well_known.DESCRIPTOR.serialized_pb)
