"""Public red-team and preference data as caitool records (``caitool import``).

:mod:`.readers` opens a file of rows of any kind (JSON Lines, JSON arrays, CSV, Parquet, a
datasets directory; compressed or not) and says where each row sits; :mod:`.transcripts`
reads ``Human:``/``Assistant:`` dialogues; :mod:`.formats` turns one row of each public shape
into a record; :mod:`.run` is the loop that gives records ids and provenance and writes them.
"""
