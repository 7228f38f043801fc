"""MusicHal midi_out stage: NoteEvents → MIDI/MPE bytes on a python-rtmidi port, scheduled, recorded, panicked.

Modules: ``protocol`` (raw bytes), ``allocator`` (channels per note id), ``engine`` (MidiOutStage),
``scheduler`` (NoteScheduler thread), ``ports`` (python-rtmidi outputs), ``recorder`` (SMF), ``lifecycle``
(panic at exit and on signals), ``cli`` (``--list-midi`` / ``--panic`` helpers). python-rtmidi is imported
only when a port is listed or opened.
"""
