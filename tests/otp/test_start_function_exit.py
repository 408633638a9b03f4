"""A start function that exits with a reason: the supervisors report that reason.

Elixir's dynamic_supervisor_test "start_child/2 with throw/error/exit" (an `exit(:oops)`
in the start function gives `{:error, :oops}`); the same holds for a static supervisor's
`start_child`.
"""

from __future__ import annotations

import pytest

import otp
from otp import dynamic_supervisor, supervisor
from otp.supervisor import ChildSpec, StartChildError


async def _exits_with_oops() -> otp.Pid:
    raise otp.ProcessExited("oops")


async def test_a_static_start_child_whose_start_exits_reports_the_exit_reason(otp_node):
    sup = await supervisor.start_link([], strategy="one_for_one")
    with pytest.raises(StartChildError) as info:
        await supervisor.start_child(sup, ChildSpec(id="c", start=_exits_with_oops))
    assert info.value.child_id == "c"
    assert info.value.reason == "oops"


async def test_a_dynamic_start_child_whose_start_exits_reports_the_exit_reason(otp_node):
    """dynamic_supervisor_test.exs: "start_child/2 with throw/error/exit"."""
    sup = await dynamic_supervisor.start_link()
    with pytest.raises(StartChildError) as info:
        await dynamic_supervisor.start_child(sup, ChildSpec(id="c", start=_exits_with_oops))
    assert info.value.child_id is None
    assert info.value.reason == "oops"
