"""Training on caitool's records with TRL: SFT, reward model, PPO and DPO.

One module per trainer (``sft``, ``rm``, ``dpo``, ``ppo``) reads and checks the data
(``data``), builds its TRL config from defaults, a YAML file and flags (``args``), and hands
the trainer to the one shared path (``fit``) that trains and saves. ``callbacks`` writes
metrics as JSONL and draws the progress bar; ``reward`` holds the soft-label reward trainer.
"""
