"""profiling pipeline: efficiency of every trained run next to the bare frozen backbone."""
