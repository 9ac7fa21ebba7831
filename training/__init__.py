"""Offline path of the neural reader: synthetic training data, training, export.

`synthetic.py` turns any corpus into question/answer/passage triples without labels
(`questions.py` makes one question from a parsed sentence), `real.py` turns the dev
gold sets into the same shape, `train.py` fine-tunes the encoder with a span head,
`export.py` writes the ONNX model and its manifest that `service/reader.py` reads.
The online path never imports this package.
"""
