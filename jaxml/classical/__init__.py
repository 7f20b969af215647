"""Classical classifiers written in JAX, one file per family.

    kernels.py        linear / polynomial / RBF / sigmoid kernels, blocked Gram matrices
    least_squares.py  regularised least squares on 1-of-K targets (ridge)
    fisher.py         Fisher discriminants: multi-class LDA, kernel FDA (exact or Nystroem)
    perceptron.py     multi-class perceptron and dual kernel perceptron (averaged)
    logistic.py       multinomial logistic regression with L2, L-BFGS (optax)
    svm.py            linear SVM (one-vs-rest squared hinge) and kernel SVM (one-vs-one SMO)
    mlp.py            MLP with the cross-entropy or the squared error
    pca.py            principal component analysis (SVD of the centred data)
    common.py         one-hot targets, L-BFGS loop, holdout search

Each classifier is `<name>_fit(x, y, ...) -> params` and `<name>_decision(params, x) -> scores`
(argmax = predicted class); see common.py for the conventions. scikit-learn is only a test and
benchmark dependency: tests/test_classical.py checks these against it.
"""
