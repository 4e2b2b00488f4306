"""What the front ends and the scheduler call: ``weekly`` (the weekly job: select,
freeze, render, enqueue, send — and open_store), ``schedule`` (the review window and
the scheduled send), ``status`` (an issue's state and counts), ``preview`` (the files
an editor opens) and ``demo`` (the whole thing on sample data)."""
