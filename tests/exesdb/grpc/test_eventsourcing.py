"""The `eventsourcing` library's example application (the dog school of its docs) runs
against exesdb through `eventsourcing-kurrentdb`, unchanged."""

from __future__ import annotations

import uuid

import pytest
from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import IntegrityError


class Dog(Aggregate):
    """A dog of the school: registered with a name, learns tricks. Its versions count from
    0, as KurrentDB's stream revisions do (eventsourcing-kurrentdb's rule)."""

    INITIAL_VERSION = 0

    @event("Registered")
    def __init__(self, name: str) -> None:
        self.name = name
        self.tricks: list[str] = []

    @event("TrickAdded")
    def add_trick(self, trick: str) -> None:
        self.tricks.append(trick)


class DogSchool(Application):
    """The application of the eventsourcing docs."""

    is_snapshotting_enabled = True

    def register_dog(self, name: str) -> uuid.UUID:
        dog = Dog(name)
        self.save(dog)
        return dog.id

    def add_trick(self, dog_id: uuid.UUID, trick: str) -> None:
        dog: Dog = self.repository.get(dog_id)
        dog.add_trick(trick)
        self.save(dog)

    def get_dog(self, dog_id: uuid.UUID) -> dict[str, object]:
        dog: Dog = self.repository.get(dog_id)
        return {"name": dog.name, "tricks": tuple(dog.tricks)}


@pytest.fixture
def school(server):
    app = DogSchool(env={"PERSISTENCE_MODULE": "eventsourcing_kurrentdb",
                         "KURRENTDB_URI": server.uri})
    yield app
    app.close()


def test_the_dog_school_records_and_reads_back_a_dog(school):
    dog_id = school.register_dog("Fido")
    school.add_trick(dog_id, "roll over")
    school.add_trick(dog_id, "play dead")
    assert school.get_dog(dog_id) == {"name": "Fido", "tricks": ("roll over", "play dead")}


def test_a_second_application_instance_sees_the_same_dog(server, school):
    dog_id = school.register_dog("Milly")
    school.add_trick(dog_id, "fetch")
    other = DogSchool(env={"PERSISTENCE_MODULE": "eventsourcing_kurrentdb",
                           "KURRENTDB_URI": server.uri})
    try:
        assert other.get_dog(dog_id) == {"name": "Milly", "tricks": ("fetch",)}
    finally:
        other.close()


def test_concurrent_changes_to_one_dog_conflict(server, school):
    dog_id = school.register_dog("Rex")
    other = DogSchool(env={"PERSISTENCE_MODULE": "eventsourcing_kurrentdb",
                           "KURRENTDB_URI": server.uri})
    try:
        mine: Dog = school.repository.get(dog_id)
        theirs: Dog = other.repository.get(dog_id)
        mine.add_trick("sit")
        school.save(mine)
        theirs.add_trick("stay")
        with pytest.raises(IntegrityError):
            other.save(theirs)
    finally:
        other.close()
    assert school.get_dog(dog_id)["tricks"] == ("sit",)


def test_an_unknown_dog_is_not_found(school):
    with pytest.raises(AggregateNotFoundError):
        school.repository.get(uuid.uuid4())


def test_a_snapshot_is_taken_and_used(school):
    dog_id = school.register_dog("Snappy")
    for trick in ("a", "b", "c"):
        school.add_trick(dog_id, trick)
    school.take_snapshot(dog_id)
    school.add_trick(dog_id, "d")
    assert school.snapshots is not None
    snapshots = list(school.snapshots.get(dog_id))
    assert [s.originator_version for s in snapshots] == [3]
    assert school.get_dog(dog_id) == {"name": "Snappy", "tricks": ("a", "b", "c", "d")}


def test_the_notification_log_lists_the_events_in_commit_order(school):
    first = school.register_dog("Log")
    school.add_trick(first, "jump")
    notifications = school.recorder.select_notifications(start=None, limit=1000)
    mine = [n for n in notifications if str(n.originator_id) == str(first)]
    assert [n.topic.rsplit(".", 1)[-1] for n in mine] == ["Registered", "TrickAdded"]
    ids = [n.id for n in notifications]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert school.recorder.max_notification_id() == ids[-1]
