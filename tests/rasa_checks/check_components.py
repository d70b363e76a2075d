"""Compare Polku's Rasa components with Rasa's own classes on one trained model.

Runs in Rasa's Python 3.10 environment (``tests/test_rasa_components.py``
starts it): ``python check_components.py MODEL TEXTS.json`` prints one JSON
object with what it compared and every difference it found.

1. Features: for every text, the sparse sequence and sentence matrices of
   ``PolkuCountVectorsFeaturizer._create_features`` against those of Rasa's
   ``CountVectorsFeaturizer._create_features`` on the same instance and tokens
   (shape, dtype, rows, columns and values, in order).
2. Parses: ``Agent.parse_message`` (what ``/model/parse`` calls) for every text
   through our components, then again with both instances sent down Rasa's
   own methods; the intent and the whole ranking must be bit-identical.
3. Model input: for every text, ``PolkuDIETClassifier.one_message_batch``
   against what Rasa's ``_create_model_data`` and ``prepare_batch`` give
   (every array's dtype, shape and values).
4. That our paths ran: the classifier's concrete function and its own batch
   were taken and the featurizer's token cache filled (a silent fallback to
   Rasa's code would pass 1 to 3).
"""

import asyncio
import functools
import json
import logging
import sys


def main(model_path: str, texts_path: str) -> dict:
    logging.disable(logging.WARNING)
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    from rasa.core.agent import Agent
    from rasa.nlu.classifiers.diet_classifier import DIETClassifier
    from rasa.nlu.featurizers.sparse_featurizer.count_vectors_featurizer import CountVectorsFeaturizer
    from rasa.nlu.tokenizers.tokenizer import Tokenizer
    from rasa.shared.nlu.constants import TEXT
    from rasa.shared.nlu.training_data.message import Message
    from rasa.utils.tensorflow.data_generator import RasaDataGenerator

    import polku_components

    texts = json.load(open(texts_path, encoding="utf-8"))
    agent = Agent.load(model_path)
    components = [node._component for node in agent.processor.graph_runner._instantiated_nodes.values()
                  if node._component is not None]
    featurizer = next(c for c in components if type(c) is polku_components.PolkuCountVectorsFeaturizer)
    classifier = next(c for c in components if type(c) is polku_components.PolkuDIETClassifier)
    tokenizer = next(c for c in components if isinstance(c, Tokenizer))
    report = {"texts": len(texts), "feature_differences": [], "parse_differences": [], "batch_differences": []}

    def coo(matrix):
        if matrix is None:
            return None
        m = matrix.tocoo()
        return [list(m.shape), str(m.dtype), str(m.row.dtype), str(m.col.dtype),
                m.row.tolist(), m.col.tolist(), m.data.tolist()]

    def arrays(batch) -> list:
        return None if batch is None else [[str(a.dtype), list(a.shape), a.tolist()] for a in batch]

    async def parse_all() -> list:
        return [await agent.parse_message(text) for text in texts]

    def ranking(parse: dict) -> list:
        return [parse["intent"]] + parse.get("intent_ranking", [])

    ours = asyncio.run(parse_all())  # through our components: after this, our batch is in use
    report["concrete_function_used"] = "_polku_concrete" in classifier.__dict__
    report["own_batch_used"] = classifier.__dict__.get("_polku_layout") is True

    for text in texts:
        message = Message(data={TEXT: text})
        tokenizer.process([message])
        tokens = featurizer._get_processed_message_tokens_by_attribute(message, TEXT)
        features = featurizer._create_features(TEXT, [tokens])
        rasas = CountVectorsFeaturizer._create_features(featurizer, TEXT, [tokens])
        for kind, a, b in (("sequence", features[0][0], rasas[0][0]), ("sentence", features[1][0], rasas[1][0])):
            if coo(a) != coo(b):
                report["feature_differences"].append({"text": text, "kind": kind, "ours": coo(a), "rasa": coo(b)})
        featurizer.process([message])
        batch = classifier.one_message_batch(message)
        model_data = classifier._create_model_data([message], training=False)
        rasas = None if model_data.is_empty() else RasaDataGenerator.prepare_batch(model_data.data)
        if arrays(batch) != arrays(rasas):
            report["batch_differences"].append({"text": text, "ours": str(arrays(batch))[:300],
                                                "rasa": str(arrays(rasas))[:300]})

    report["tokens_cached"] = sum(len(c.tokens) for c in featurizer.__dict__.get("_polku_counters", {}).values())
    featurizer._create_features = functools.partial(CountVectorsFeaturizer._create_features, featurizer)
    classifier._predict = functools.partial(DIETClassifier._predict, classifier)
    theirs = asyncio.run(parse_all())
    for text, a, b in zip(texts, ours, theirs):
        if ranking(a) != ranking(b):
            report["parse_differences"].append({"text": text, "ours": ranking(a)[:3], "rasa": ranking(b)[:3]})
    return report


if __name__ == "__main__":
    print("POLKU-REPORT " + json.dumps(main(sys.argv[1], sys.argv[2]), ensure_ascii=False))
