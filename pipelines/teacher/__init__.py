"""The teacher: any transformers sequence classifier, loaded safely, checked against a task, fine-tuned, scored.

- `hub`: resolve a directory or hub id (download allow-list), hash its files, load config, tokenizer and model.
- `checks`: does a teacher fit a task (label map, max length, mask token)?
- `scorer`: tokenise, batch, collate, forward with OOM halving; `TeacherScorer`, a callable batch function.
- `finetune`: the fine-tuning loop.

Both teacher stages share everything below the stage level: `finetune-teacher` evaluates with the scorer's own
`encode` and `predict_logits`. Import the submodules (`from pipelines.teacher import hub, scorer`): this package
itself imports nothing, so importing it costs nothing.
"""
