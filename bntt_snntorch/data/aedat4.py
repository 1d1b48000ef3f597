"""Write event recordings as AEDAT 4.0 files (the container DV writes and tonic / ``aedat`` read).

Layout: the magic line ``#!AER-DAT4.0\\r\\n``; a little-endian u32 size and
the IO header (flatbuffer ``Ioheader``: compression none, no data table, an
XML description of one ``EVTS`` stream with the sensor size); then records of
(u32 stream id, u32 size, size-prefixed flatbuffer ``EventPacket`` with file
identifier ``EVTS``) holding structs {t: i64 us, x: i16, y: i16, on: bool}.
Used to export simulated events and to write real-format test data.
Needs the ``flatbuffers`` package (``pip install flatbuffers``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MAGIC = b"#!AER-DAT4.0\r\n"
_EVENT_STRUCT = np.dtype(
    {"names": ["t", "x", "y", "on"], "formats": ["<i8", "<i2", "<i2", "?"], "offsets": [0, 8, 10, 12], "itemsize": 16}
)


def _flatbuffers():
    try:
        import flatbuffers
    except ImportError:
        raise ImportError("writing AEDAT4 files needs the flatbuffers package: pip install flatbuffers") from None
    return flatbuffers


def io_header(width: int, height: int) -> bytes:
    """The flatbuffer ``Ioheader`` describing one event stream (id 0) of a ``width`` x ``height`` sensor."""
    fb = _flatbuffers()
    description = (
        '<dv version="2.0"><node name="outInfo" path="/mainloop/Recorder/outInfo/">'
        '<node name="0" path="/mainloop/Recorder/outInfo/0/">'
        '<attr key="compression" type="string">NONE</attr>'
        '<attr key="originalOutputName" type="string">events</attr>'
        '<attr key="typeIdentifier" type="string">EVTS</attr>'
        '<node name="info" path="/mainloop/Recorder/outInfo/0/info/">'
        f'<attr key="sizeX" type="int">{width}</attr><attr key="sizeY" type="int">{height}</attr>'
        "</node></node></node></dv>"
    )
    builder = fb.Builder(len(description) + 64)
    text = builder.CreateString(description)
    builder.StartObject(3)
    builder.PrependInt32Slot(0, 0, 0)  # compression: none
    builder.PrependInt64Slot(1, -1, -1)  # file_data_position: -1 (no data table)
    builder.PrependUOffsetTRelativeSlot(2, text, 0)
    builder.Finish(builder.EndObject(), file_identifier=b"IOHE")
    return bytes(builder.Output())


def event_packet(events: np.ndarray) -> bytes:
    """A size-prefixed ``EventPacket`` flatbuffer of ``events`` (fields t, x, y, p)."""
    fb = _flatbuffers()
    packed = np.zeros(len(events), _EVENT_STRUCT)
    packed["t"], packed["x"], packed["y"], packed["on"] = events["t"], events["x"], events["y"], events["p"]
    data = packed.tobytes()
    builder = fb.Builder(len(data) + 64)
    builder.StartVector(16, len(events), 8)
    builder.head -= len(data)  # StartVector reserved the room: copy the packed structs in at once
    builder.Bytes[builder.head : builder.head + len(data)] = data
    elements = builder.EndVector()
    builder.StartObject(1)
    builder.PrependUOffsetTRelativeSlot(0, elements, 0)
    builder.FinishSizePrefixed(builder.EndObject(), file_identifier=b"EVTS")
    return bytes(builder.Output())


def write_aedat4(
    path: str | Path, events: np.ndarray, width: int = 128, height: int = 128, packet_size: int = 4096
) -> Path:
    """Write ``events`` (structured array with t [us], x, y, p) to ``path`` in packets of ``packet_size``."""
    path = Path(path)
    header = io_header(width, height)
    with open(path, "wb") as f:
        f.write(MAGIC)
        f.write(np.uint32(len(header)).tobytes() + header)
        for start in range(0, len(events), packet_size):
            packet = event_packet(events[start : start + packet_size])
            f.write(np.uint32(0).tobytes() + np.uint32(len(packet)).tobytes() + packet)
    return path
