"""How several predictions become one: the combination rules (soft, hard, weighted, mean voting), weights on
the simplex fitted without leaking, and the scores both ensembles and TTA use. Numbers in, numbers out: no
model is loaded here (``honed.predict`` holds the ensemble predictors)."""
