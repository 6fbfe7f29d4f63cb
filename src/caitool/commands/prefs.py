from __future__ import annotations

from caitool import console, stream
from caitool.commands._common import Input
from caitool.options import StreamFlags, command
from caitool.preferences import by_construction, check_for_prefs

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
    same = []

    def process(batch):
        out = []
        for record in batch:
            result = by_construction(record)
            if result is None:
                same.append(record["id"])
            else:
                out.append(result)
        return out

    stream.run(NAME, input, stream_flags, process, validate=check_for_prefs,
               describe="pairing")
    if same:
        console.warn(NAME, f"{len(same)} record(s) left out: revision identical to the "
                     f"initial response (first: {same[0]})")
