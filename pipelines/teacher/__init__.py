"""The teacher: any transformers sequence classifier, loaded safely, checked against a task, fine-tuned, scored.

- `checks`: does a teacher fit a task (label map, max length, mask token)?
- `scorer`: tokenise, batch, collate, forward with OOM halving; `TeacherScorer`, a callable batch function.
- `finetune`: the fine-tuning loop.

Models are found, hashed and loaded by `pipelines.hub` (the student loads its own with it too).

Both teacher stages share everything below the stage level: `finetune-teacher` evaluates with the scorer's own
`encode` and `predict_logits`. Import the submodules (`from pipelines.teacher import checks, scorer`): this package
itself imports nothing, so importing it costs nothing.
"""
