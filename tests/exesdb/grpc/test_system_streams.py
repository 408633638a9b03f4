"""The streams the server keeps for itself (persistent subscription groups'
configuration and parked events, and their metadata) refuse clients' appends, batch
appends, deletes and tombstones with access denied; other system streams (``$$s``
metadata) stay writable."""

from __future__ import annotations

import pytest
from kurrentdbclient import NewEvent, StreamState
from kurrentdbclient.exceptions import AccessDeniedError

from exesdb.grpc.streams_service import written_by_the_server

OWNED = ["$persistentSubscriptionConfig", "$persistentsubscription-orders::g-parked",
         "$$$persistentsubscription-orders::g-parked"]


@pytest.mark.parametrize("stream", OWNED)
def test_a_single_event_append_to_a_server_stream_is_denied(client, stream):
    with pytest.raises(AccessDeniedError):
        client.append_to_stream(stream, events=NewEvent(type="X", data=b"{}"),
                                current_version=StreamState.ANY)


@pytest.mark.parametrize("stream", OWNED)
def test_a_batch_append_to_a_server_stream_is_denied(client, stream):
    with pytest.raises(AccessDeniedError):
        client.append_to_stream(stream, events=[NewEvent(type="X", data=b"{}"),
                                                NewEvent(type="Y", data=b"{}")],
                                current_version=StreamState.ANY)


def test_deleting_or_tombstoning_a_server_stream_is_denied(client):
    with pytest.raises(AccessDeniedError):
        client.delete_stream("$persistentSubscriptionConfig", current_version=StreamState.ANY)
    with pytest.raises(AccessDeniedError):
        client.tombstone_stream("$persistentSubscriptionConfig",
                                current_version=StreamState.ANY)


def test_stream_metadata_streams_stay_writable(client):
    client.set_stream_metadata("plain", metadata={"$maxCount": 3},
                               current_version=StreamState.ANY)
    assert client.get_stream_metadata("plain")[0] == {"$maxCount": 3}


def test_only_the_servers_own_streams_are_reserved():
    assert all(written_by_the_server(s) for s in OWNED)
    assert not any(written_by_the_server(s) for s in
                   ["orders", "$$orders", "$persistentsubscriptions", "$et-Order"])
