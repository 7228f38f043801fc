"""Everything ``musichal`` checks before Ray or any actor starts, and how a model listens live.

:func:`preflight` checks each input a user names (input file, model, MIDI API and port, audio device, wav2vec
checkpoint) and raises one MusicHalError line; :func:`plan_listening` turns a model's PerceptionSpec and the live
flags into the perception the encoder is built from (``musichal --describe`` prints it).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from shared.config import MusicHalConfig

__all__ = ["listening_request", "plan_listening", "describe_listening", "preflight"]


def _check_midi_input(config: MusicHalConfig, spec: Any, port: str, *, model: bool, api: str) -> None:
    """``--input-midi`` with this model (or live learning) and port: one line (exit 2) when they cannot work."""
    from shared.errors import ParameterError

    if spec is not None and "symbolic" not in spec.views:
        raise ParameterError(
            f"--input-midi needs a model of the symbolic view; {spec.source or 'this model'} listens with "
            f"{'+'.join(spec.views)} (MIDI notes have no audio to analyse): train one from MIDI files or with "
            "musichal-train --symbolic, or learn live without --model"
        )
    if not model and config.features.kind != "symbolic":
        raise ParameterError(
            f"--input-midi learns the symbolic view; [features] kind = {config.features.kind!r} cannot hear MIDI notes"
        )
    if port != "virtual" and api == "jack":
        from services.midi_out.jack_midi import jack_midi_ports
        from services.midi_out.ports import choose_port

        choose_port(jack_midi_ports(outputs=True), port, "input")


def listening_request(
    config: MusicHalConfig, *, checkpoint: str | None = None, other_checkpoint: bool = False
) -> dict[str, Any]:
    """The live perception the user asked for (flags or config file): only what differs from the defaults counts."""
    from shared.config import Wav2VecConfig

    default = Wav2VecConfig()
    if checkpoint is None and config.wav2vec.model != default.model:
        checkpoint = config.wav2vec.model
    return {
        "wav2vec": config.features.kind == "wav2vec",
        "hybrid": bool(config.features.hybrid),
        "checkpoint": checkpoint,
        "allow_other_checkpoint": bool(other_checkpoint or config.wav2vec.other_checkpoint),
        "layer": config.wav2vec.layer if config.wav2vec.layer != default.layer else None,
    }


def plan_listening(
    config: MusicHalConfig,
    model: Any,
    *,
    checkpoint: str | None = None,
    other_checkpoint: bool = False,
    resolve_here: bool = True,
) -> Any:
    """The model's PerceptionSpec with the live request attached; contradicting flags and a missing or different
    checkpoint raise one line (ParameterError / DeviceError). ``resolve_here``: the encoder runs on this node."""
    from services.encoder.spec import check_live_request, resolve_checkpoint

    spec = model.spec
    if spec is None:
        return None
    request = listening_request(config, checkpoint=checkpoint, other_checkpoint=other_checkpoint)
    check_live_request(spec, **request)
    spec = spec.with_request(checkpoint=request["checkpoint"], allow_other_checkpoint=request["allow_other_checkpoint"])
    if resolve_here:  # found and verified here: the encoder (same node, another working directory) loads that folder
        found = resolve_checkpoint(spec)
        if found is not None:
            spec = spec.with_request(checkpoint=found, allow_other_checkpoint=request["allow_other_checkpoint"])
    return spec


def describe_listening(
    config: MusicHalConfig, model_paths: list[str], *, checkpoint: str | None = None, other_checkpoint: bool = False
) -> Iterator[str]:
    """``musichal --describe``: each model's description, then how this invocation would listen (checked)."""
    from services.encoder.spec import resolve_checkpoint
    from services.model_file import describe_model, load_musichal_model

    for index, path in enumerate(model_paths):
        model = load_musichal_model(path)
        yield describe_model(model)
        if index == 0 and model.spec is not None:  # how this invocation would listen, checked
            spec = plan_listening(
                config, model, checkpoint=checkpoint, other_checkpoint=other_checkpoint, resolve_here=False
            )
            if spec.wav2vec is not None and not config.cluster.encoder_resource:
                yield f"checkpoint on this machine: {resolve_checkpoint(spec)} (verified)"


def preflight(
    config: MusicHalConfig,
    *,
    input_file: str | None = None,
    input_device: Any = None,
    model_path: str | None = None,
    checkpoint: str | None = None,
    other_checkpoint: bool = False,
    input_midi: str | None = None,
) -> Any:
    """Check every input a user names before Ray or any actor starts; raise a MusicHalError with one line.

    ``input_midi`` (``--input-midi``): the model must listen with the symbolic view (learning live, the features
    must be symbolic), and on JACK a named source port must exist.

    Input file header, the model (loaded and checked as the oracle actor will check it) and how it listens
    (:func:`plan_listening`: flags that contradict it, its wav2vec checkpoint found and verified), MIDI API and
    named port, audio input device (when no file is given) and, learning live, the wav2vec checkpoint.
    Returns the model's PerceptionSpec (None without a model, or a model without fitted perception).
    """
    spec = None
    if input_file is not None:
        from shared.audio import probe_audio_file

        probe_audio_file(input_file)
    if model_path is not None:
        from services.model_file import load_musichal_model
        from services.oracle.memory.store import OracleMemory
        from shared.errors import ModelFormatError

        model = load_musichal_model(model_path)
        try:  # the oracle's own consistency checks (the actor would otherwise die at start and restart forever)
            OracleMemory(config, model=model.oracle_parts)
        except ModelFormatError as error:
            raise ModelFormatError(f"{model_path}: {error}") from None
        spec = plan_listening(
            config,
            model,
            checkpoint=checkpoint,
            other_checkpoint=other_checkpoint,
            resolve_here=not config.cluster.encoder_resource,
        )
    from services.midi_out.ports import choose_port, list_output_ports, resolve_api

    api = resolve_api(config.midi.api)
    if config.midi.port is not None:
        choose_port(list_output_ports(api), config.midi.port)
    if input_file is None:
        from services.capture.devices import choose_input_device, list_input_devices

        choose_input_device(list_input_devices(), input_device)
    if input_midi is not None:
        _check_midi_input(config, spec, input_midi, model=model_path is not None, api=api)
    if model_path is None and config.features.kind == "wav2vec" and not config.cluster.encoder_resource:
        from services.encoder.wav2vec import check_wav2vec_available

        check_wav2vec_available(
            config.wav2vec.model
        )  # a remote encoder resolves it on its own node (one line naming it)
    return spec
