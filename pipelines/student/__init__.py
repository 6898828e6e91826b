"""The students of Tang et al. (2019), and how they are trained and served. Callers import the submodules:

  tokenizer.py  the regex word tokeniser (PTB/spaCy token boundaries)
  vocab.py      Vocab, Corpus (token ids in CSR form), tokenize_corpus, encode_texts, pad_batch
  vectors.py    pretrained word vectors (GloVe package, text files, spaCy) and the initial embedding table
  models.py     StudentConfig and the models, registered by name (BiLSTM, siamese BiLSTM); predict_logits
  io.py         student directories: save_student, load_student, load_metrics; count_parameters
  bilstm_training.py  `fit`: the BiLSTM trainer behind `distill train` (its data, objective and outputs), on the
                project's one loop (`pipelines.training`); word_cache.py: its tokens, from the token cache
  export.py     TorchScript and ONNX files, checked against the model; copies predict.py
  predict.py    the stand-alone predictor copied into every student directory (torch or onnxruntime only)
  transformer.py, transformer_training.py, piece_cache.py, transformer_export.py, predict_transformer.py: the
                DistilBERT-style student made from the teacher's layers, its trainer, its word pieces from the
                token cache, its ONNX file and its predictor

Nothing is imported here: the submodules import torch, and the CLI's help must not.
"""
