"""Every `--exp` name, explicitly: add a line here when you add an experiment."""

from experiments import activity, classical_mnist, faces, imdb, mnist_cnn, ngram_lm, sparse_ae
from experiments.base import Experiment

EXPERIMENTS: dict[str, Experiment] = {
    e.name: e for e in (
        activity.RNN,
        activity.LSTM,
        activity.GRU,
        mnist_cnn.CNN,
        mnist_cnn.LENET5,
        classical_mnist.EXPERIMENT,
        imdb.LSTM,
        imdb.GRU,
        sparse_ae.SPARSE_AE,
        sparse_ae.SPARSE_AE_SWEEP,
        faces.DETECT,
        faces.RECOGNITION,
        ngram_lm.NGRAM_LM,
    )
}
