"""Evaluation: ``systems`` loads and judges systems' answers, ``statistics`` turns judgments
into win rates and Elo scores, ``report`` prints tables and draws the plot."""
