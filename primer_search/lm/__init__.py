"""Language models around compiled blocks: data, tokenizers, the model kinds, training, decoding, sampling, fitness."""
