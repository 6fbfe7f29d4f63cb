"""Records in and out: :mod:`.jsonl` reads and writes lines, :mod:`.stream` is the batch loop."""
