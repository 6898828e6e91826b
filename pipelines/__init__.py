"""distill-pipelines: stages that turn task text and a BERT-family teacher into tiny distilled students."""

__version__ = "0.1.0"
