"""otp.lowlevel: the hooks for libraries built on otp, as :mod:`trio.lowlevel` is for trio.

Application code rarely needs these; code that keeps state beside processes does:

* :func:`current_node` — the :class:`otp.Node` of the current process or node task.
* :func:`on_exit` — run ``fn(reason)`` when a process ends, however it ends, after its
  local name is released and before anyone can observe its exit through a link or a
  monitor. This is how a registry forgets a process's entries and a store closes its
  files even when its process is killed.
* :class:`NodeVar` — one value per node (like :class:`trio.lowlevel.RunVar`), kept on the
  node itself: state shared by a node's processes that must not leak into another node
  running in the same OS process.
"""

from __future__ import annotations

from ._process import NodeVar, current_node, on_exit

__all__ = ["NodeVar", "current_node", "on_exit"]
