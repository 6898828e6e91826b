"""The one training loop that every model of the project is trained by: the BiLSTM and transformer students
(`pipelines.student`) and the teacher's fine-tune (`pipelines.teacher.finetune`). Each trainer keeps only what
differs (its model, how a batch of rows becomes per-row losses, what it writes); everything else is here:

  plan.py        every epoch's batches planned before the first step, so the schedule is sized from the batches
                 that really run and a resumed run finds the same ones
  fitter.py      the optimiser step: gradient accumulation, autocast, clipping, the schedule, a moving average
  selection.py   the loop's counters, the epoch kept (selection on the holdout, early stopping), final metrics
  resume.py      checkpoints at the end of an epoch and inside one, restored exactly
  loop.py        the epochs: a pass over the planned batches, then evaluation, selection and a checkpoint
  rows.py        the scored set's rows a student learns from (holdout, filters, ablations), for both families
  objective.py   the students' per-row losses against the cached logits, for both families

Importing this package does not import torch; its modules do.
"""
