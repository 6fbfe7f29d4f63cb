"""One module per constitution format that caitool reads."""
