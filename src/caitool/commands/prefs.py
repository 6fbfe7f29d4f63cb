from __future__ import annotations

from caitool import console
from caitool.commands._flags import Input, StreamFlags, command
from caitool.io import stream
from caitool.schema import check_revised
from caitool.stages import feedback

NAME = "prefs"
EXAMPLE = (
    "    caitool critique -m M < red_team.jsonl | caitool revise -m M | caitool prefs > dpo.jsonl\n"
    "    caitool prefs --skip-invalid round4.jsonl -o dpo.jsonl"
)


@command
def command(
    input: Input = "-",
    stream_flags: StreamFlags = None,
) -> None:
    """Preference pairs by construction, with no judge: final revision over initial response.

    Reads supervised-stage records ('initial_response' and 'revisions', as 'caitool critique'
    and 'caitool revise' write them) and writes TRL preference records: 'prompt', 'chosen'
    (the last revision), 'rejected' (the initial response), 'p_chosen' 1.0. A record whose
    revision is the same text as its initial response gives no pair.
    """
    unchanged: list[str] = []
    stream.run(NAME, input, lambda batch: feedback.prefs(batch, unchanged),
               validate=check_revised, describe="pairing", **stream_flags.stream_options())
    if unchanged:
        console.warn(NAME, f"{len(unchanged)} record(s) left out: revision identical to the "
                     f"initial response (first: {unchanged[0]})")
