"""The receptive-field algebra and its rules (Araujo, Norris & Sim, Distill 2019).

* :mod:`.algebra` — per-axis maps ``unit → input interval`` with exact rational stride;
* :mod:`.tensor` — which dims of a tensor carry which spatial axis;
* :mod:`.rules` — ONE table, op or module type → rule, one file per op family (add an op here);
* :mod:`.propagate` — the pass over the graph that applies them.
"""
