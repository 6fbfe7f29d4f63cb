"""Evaluation: ``systems`` loads and judges systems' answers, ``statistics`` turns judgments
into win rates and Elo scores, ``report`` prints tables and draws the plot;
``multiple_choice`` measures a judge's accuracy on questions with known answers (eval-mc),
and ``reward_scoring`` does the same with a reward model."""
