"""MusicHal's oracle: the memory (:mod:`services.oracle.memory`), the player (:mod:`services.oracle.player`) and the
oracle actor that wires them to the rings (:mod:`services.oracle.actor`)."""
