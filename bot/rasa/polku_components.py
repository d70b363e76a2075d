"""Rasa components of Polku chat: Rasa's own CountVectorsFeaturizer and
DIETClassifier, trained exactly as Rasa trains them, with a cheaper path for
featurizing and classifying a message.

Runs inside Rasa's Python 3.10 environment (``bot.training.rasa_env`` puts this
directory on ``PYTHONPATH`` of every Rasa process: training, ``rasa run``, the
benchmark's stock reference). It imports nothing of ours.

Why: a parse in ``rasa run`` costs about 3.3 ms of CPU on a fast machine, and
the Rasa process is what limits the chat server's throughput. Profiles of
``/model/parse`` showed where that CPU went beside the model itself:

* about 23% in TensorFlow's ``tf.function`` call machinery: every call matches
  the inputs against the function's signature (trace types, casts) before the
  already-traced graph runs. ``PolkuDIETClassifier`` traces the function once
  as Rasa does, keeps its concrete function and calls it with the inputs
  converted to the signature's dtypes: the same graph on the same tensors.
  It also builds the model's input for the message directly from its two
  sparse feature matrices (``one_message_batch``): Rasa's general model data
  (``_create_model_data``: featurizing "training examples", a data generator,
  sorting keys) cost about a sixth of a parse. It is used only after it built
  exactly Rasa's batch for a message in this process, and only for the layout
  our pipeline has (sparse features only); anything else goes Rasa's way.
* about 17% in two scikit-learn ``CountVectorizer.transform`` calls per
  message (one for the token sequence, one for the whole sentence), mostly
  input checks and sparse matrix construction. ``PolkuCountVectorsFeaturizer``
  counts each token's character n-grams once (cached per token) and builds the
  same matrices. For the ``char_wb`` analyzer the sentence's counts are the sum
  of its tokens' counts: ``char_wb`` takes n-grams within whitespace-separated
  words, and the sentence is the tokens joined by spaces.

Both produce exactly what Rasa's own classes produce: the same sparse features
(values, dtypes, order) and bit-identical intent confidences
(``tests/rasa_checks/check_components.py`` compares them on the training data
and the held-out set). In-process, a parse took 3.4 ms of CPU with Rasa's
classes and 1.8 ms with these, on the same machine. Both reach into Rasa's,
TensorFlow's and scikit-learn's internals, which is acceptable only because
every package of Rasa's environment is pinned (``bot/rasa/requirements.lock``);
anything unexpected falls back to Rasa's own code.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Text, Tuple

import numpy as np
import scipy.sparse
from keras.utils import tf_utils
from tensorflow.python.eager import context
from tensorflow.python.framework.constant_op import convert_to_eager_tensor

from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.nlu.classifiers.diet_classifier import DIETClassifier
from rasa.nlu.constants import DENSE_FEATURIZABLE_ATTRIBUTES
from rasa.nlu.featurizers.sparse_featurizer.count_vectors_featurizer import CountVectorsFeaturizer
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.constants import DIAGNOSTIC_DATA
from rasa.shared.nlu.constants import TEXT
from rasa.utils.tensorflow.constants import FEATURIZERS
from rasa.utils.tensorflow.data_generator import RasaDataGenerator

TOKEN_CACHE_SIZE = 50_000  # distinct tokens whose n-gram counts are kept, per attribute


class _Counter:
    """One fitted vectorizer's n-gram counting, with counts cached per token."""

    def __init__(self, vectorizer: Any, vocabulary: Dict[Text, int]) -> None:
        self.vectorizer = vectorizer
        self.vocabulary = vocabulary
        self.size = len(vocabulary)
        self.analyze = vectorizer.build_analyzer()
        self.dtype = vectorizer.dtype
        self.tokens: Dict[Text, List[Tuple[int, int]]] = {}

    def valid_for(self, vectorizer: Any) -> bool:
        return (vectorizer is self.vectorizer and getattr(vectorizer, "vocabulary_", None) is self.vocabulary
                and len(self.vocabulary) == self.size)

    def counts(self, token: Text) -> List[Tuple[int, int]]:
        """(column, count) pairs of the token's known n-grams, by column."""
        found = self.tokens.get(token)
        if found is None:
            counts: Dict[int, int] = {}
            for gram in self.analyze(token):
                column = self.vocabulary.get(gram)
                if column is not None:
                    counts[column] = counts.get(column, 0) + 1
            found = sorted(counts.items())
            if len(self.tokens) >= TOKEN_CACHE_SIZE:
                self.tokens.clear()
            self.tokens[token] = found
        return found

    def matrices(self, tokens: List[Text], sentence: bool) -> Tuple[scipy.sparse.coo_matrix,
                                                                    Optional[scipy.sparse.coo_matrix]]:
        """What ``transform(tokens).tocoo()`` and ``transform([" ".join(tokens)]).tocoo()``
        give (sorted indices, int32 indices, the vectorizer's dtype)."""
        rows: List[int] = []
        columns: List[int] = []
        values: List[int] = []
        totals: Dict[int, int] = {}
        for row, token in enumerate(tokens):
            for column, count in self.counts(token):
                rows.append(row)
                columns.append(column)
                values.append(count)
                totals[column] = totals.get(column, 0) + count
        sequence = scipy.sparse.coo_matrix(
            (np.array(values, dtype=self.dtype),
             (np.array(rows, dtype=np.int32), np.array(columns, dtype=np.int32))),
            shape=(len(tokens), self.size))
        if not sentence:
            return sequence, None
        summed = sorted(totals.items())
        whole = scipy.sparse.coo_matrix(
            (np.array([count for _, count in summed], dtype=self.dtype),
             (np.zeros(len(summed), dtype=np.int32), np.array([column for column, _ in summed], dtype=np.int32))),
            shape=(1, self.size))
        return sequence, whole


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER, is_trainable=True)
class PolkuCountVectorsFeaturizer(CountVectorsFeaturizer):
    """Rasa's CountVectorsFeaturizer; with the ``char_wb`` analyzer, features are
    counted without scikit-learn's per-call overhead (see the module docstring)."""

    def _counter(self, attribute: Text) -> Optional[_Counter]:
        if self.analyzer != "char_wb":
            return None
        vectorizer = self.vectorizers.get(attribute) if self.vectorizers else None
        if vectorizer is None or getattr(vectorizer, "analyzer", None) != "char_wb":
            return None
        counters: Dict[Text, _Counter] = self.__dict__.setdefault("_polku_counters", {})
        counter = counters.get(attribute)
        if counter is not None and counter.valid_for(vectorizer):
            return counter
        if getattr(vectorizer, "vocabulary_", None) is None:
            if not vectorizer.vocabulary:
                return None  # never fitted: Rasa's own path says so
            vectorizer._validate_vocabulary()  # what transform() does first: sets vocabulary_
        if not isinstance(getattr(vectorizer, "vocabulary_", None), dict) or not vectorizer.vocabulary_:
            return None
        counter = counters[attribute] = _Counter(vectorizer, vectorizer.vocabulary_)
        return counter

    def _create_features(self, attribute: Text, all_tokens: List[List[Text]]) -> Tuple[
            List[Optional[scipy.sparse.spmatrix]], List[Optional[scipy.sparse.spmatrix]]]:
        counter = self._counter(attribute)
        if counter is None:
            return super()._create_features(attribute, all_tokens)
        sentence = attribute in DENSE_FEATURIZABLE_ATTRIBUTES
        sequence_features: List[Optional[scipy.sparse.spmatrix]] = []
        sentence_features: List[Optional[scipy.sparse.spmatrix]] = []
        for tokens in all_tokens:
            if not tokens:
                sequence_features.append(None)
                sentence_features.append(None)
                continue
            sequence, whole = counter.matrices(tokens, sentence)
            sequence_features.append(sequence)
            sentence_features.append(whole)
        return sequence_features, sentence_features


def _sparse_values(matrix: scipy.sparse.coo_matrix) -> List[np.ndarray]:
    """A one-message batch's (indices, values, shape) of a sparse feature matrix, as
    Rasa's ``RasaDataGenerator._scipy_matrix_to_values`` makes them."""
    indices = np.zeros((matrix.nnz, 3), dtype=np.int64)
    indices[:, 1] = matrix.row
    indices[:, 2] = matrix.col
    return [indices, matrix.data.astype(np.float32), np.array((1,) + matrix.shape, dtype=np.int64)]


def _same_arrays(ours: Tuple[Any, ...], theirs: Tuple[Any, ...]) -> bool:
    return len(ours) == len(theirs) and all(
        isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
        for a, b in zip(ours, theirs))


@DefaultV1Recipe.register(
    [DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER, DefaultV1Recipe.ComponentType.ENTITY_EXTRACTOR],
    is_trainable=True,
)
class PolkuDIETClassifier(DIETClassifier):
    """Rasa's DIETClassifier; one message is classified through the traced
    TensorFlow function's concrete function (see the module docstring)."""

    def _predict(self, message: Message) -> Optional[Dict[Text, Any]]:
        model = self.model
        if model is None or getattr(model, "_run_eagerly", False) or model._tf_predict_step is None:
            # untrained, eager, or the first parse: Rasa's own path, which traces the function
            return super()._predict(message)
        batch_in = self.one_message_batch(message)
        if batch_in is None:
            model_data = self._create_model_data([message], training=False)
            if model_data.is_empty():
                return None
            # what run_inference's data generator yields for a single message
            batch_in = RasaDataGenerator.prepare_batch(model_data.data)
            self._check_layout(message, batch_in)
        return self._call_traced(model, batch_in)

    def one_message_batch(self, message: Message) -> Optional[Tuple[np.ndarray, ...]]:
        """The model's input for one message whose text has only sparse features (our
        pipeline): what ``prepare_batch(_create_model_data([message]).data)`` gives,
        without building Rasa's general model data. ``None``: any other layout,
        which Rasa's own path handles."""
        if self.__dict__.get("_polku_layout") is not True:
            return None  # not (yet) found equal to Rasa's own batch (see _check_layout)
        return self._own_batch(message)

    def _own_batch(self, message: Message) -> Optional[Tuple[np.ndarray, ...]]:
        if self.component_config.get(FEATURIZERS):
            return None  # a selection of featurizers: Rasa's path filters by it
        sequence, sentence = message.get_sparse_features(TEXT)
        dense_sequence, dense_sentence = message.get_dense_features(TEXT)
        if sequence is None or sentence is None or dense_sequence is not None or dense_sentence is not None:
            return None
        sequence_matrix, sentence_matrix = sequence.features.tocoo(), sentence.features.tocoo()
        return (np.ones((1, 1, 1), dtype=np.float32),  # text mask: the text is there
                *_sparse_values(sentence_matrix), *_sparse_values(sequence_matrix),
                np.array([sequence_matrix.shape[0]], dtype=np.float32))  # sequence lengths

    def _check_layout(self, message: Message, batch_in: Tuple[Any, ...]) -> None:
        """Allow one_message_batch once it builds exactly Rasa's batch for a message."""
        if "_polku_layout" not in self.__dict__:
            ours = self._own_batch(message)
            self.__dict__["_polku_layout"] = ours is not None and _same_arrays(ours, batch_in)

    def _call_traced(self, model: Any, batch_in: Tuple[Any, ...]) -> Dict[Text, Any]:
        step = model._tf_predict_step
        cached = self.__dict__.get("_polku_concrete")
        if cached is None or cached[0] is not step:
            concrete = step.get_concrete_function()  # the signature is fixed: no new trace
            dtypes = [spec.dtype for spec in concrete.structured_input_signature[0][0]]
            cached = self.__dict__["_polku_concrete"] = (step, concrete, dtypes)
        _, concrete, dtypes = cached
        if len(batch_in) != len(dtypes):
            return model._rasa_predict(batch_in)
        model._training = False  # as _rasa_predict sets it
        # numpy arrays to eager tensors: what tf.convert_to_tensor ends in, without
        # its dispatch and conversion-registry lookups (half its cost)
        ctx = context.context()
        ctx.ensure_initialized()
        tensors = [convert_to_eager_tensor(value, ctx, dtype) for value, dtype in zip(batch_in, dtypes)]
        outputs = tf_utils.sync_to_numpy_or_python_type(concrete._call_flat(tensors, concrete.captured_inputs))
        if DIAGNOSTIC_DATA in outputs:
            outputs[DIAGNOSTIC_DATA] = model._empty_lists_to_none_in_dict(outputs[DIAGNOSTIC_DATA])
        return outputs
