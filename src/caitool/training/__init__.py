"""Training on caitool's records with TRL: SFT, reward model, PPO and DPO.

``data`` turns records into TRL datasets (checking them, with file:line errors, before any
model is loaded); ``config`` builds TRL config objects from defaults, a YAML file and flags;
``callbacks`` writes metrics as JSONL and draws the progress bar; ``reward`` holds the
soft-label reward trainer; ``run`` ties them together, one function per command.
"""
