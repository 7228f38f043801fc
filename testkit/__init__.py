"""Development support shared by tests/ and benchmarks/ (not part of the wheel: pyproject packages only services*
and shared*): rendered test pieces (``audio``), the JACK MIDI reader (``midi``, ``jack_midi_reader``), bounded waits
(``waiting``), the live echo loop (``echo_loop``) and echo scene (``echo_scene``), network namespaces and ``ray start``
helpers (``netns``), the reference factor oracle, the bad-input cases, a hand-moved clock (``clock``) and hand-built
percepts (``percepts``). Nothing here imports tests/.
"""
