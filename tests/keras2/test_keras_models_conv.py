"""Keras 2.3.1 convolutional models on kcomp, checked against independent numpy forward passes:
Conv1D/2D/3D, SeparableConv1D/2D, DepthwiseConv2D, Conv2DTranspose, LocallyConnected1D/2D,
pooling, global pooling, cropping, zero padding and up-sampling. Batch sizes 1 and 7."""
import pytest

keras = pytest.importorskip("keras")
from keras import layers as L  # noqa: E402
from keras.models import Model, Sequential  # noqa: E402

import keras_reference as R  # noqa: E402
from keras_helpers import check_model, data, randomize  # noqa: E402


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=3),
    dict(kernel_size=3, strides=2, padding="same", activation="relu"),
    dict(kernel_size=2, dilation_rate=2, padding="causal"),
    dict(kernel_size=4, padding="same", use_bias=False),
])
def test_conv1d(kwargs):
    model = Sequential([L.Conv1D(5, input_shape=(11, 3), **kwargs)])
    w = randomize(model, 10)
    k = kwargs

    def ref(x):
        return R.conv(x.astype("float64"), w[0], w[1] if len(w) > 1 else None,
                      k.get("strides", 1), k.get("padding", "valid"), k.get("dilation_rate", 1),
                      k.get("activation"))
    check_model(model, lambda n: data((n, 11, 3), n), ref)


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=3),
    dict(kernel_size=(3, 2), strides=(2, 1), padding="same", activation="tanh"),
    dict(kernel_size=3, dilation_rate=(2, 1), padding="same"),
    dict(kernel_size=(2, 3), strides=2, padding="valid", use_bias=False),
])
def test_conv2d(kwargs):
    model = Sequential([L.Conv2D(4, input_shape=(9, 8, 3), **kwargs)])
    w = randomize(model, 11)
    k = kwargs

    def ref(x):
        return R.conv(x.astype("float64"), w[0], w[1] if len(w) > 1 else None,
                      k.get("strides", 1), k.get("padding", "valid"), k.get("dilation_rate", 1),
                      k.get("activation"))
    check_model(model, lambda n: data((n, 9, 8, 3), n), ref)


def test_conv2d_channels_first():
    model = Sequential([L.Conv2D(4, 3, padding="same", strides=2, data_format="channels_first",
                                 input_shape=(3, 7, 6))])
    w = randomize(model, 12)

    def ref(x):
        y = R.conv(x.astype("float64").transpose(0, 2, 3, 1), w[0], w[1], 2, "same")
        return y.transpose(0, 3, 1, 2)
    check_model(model, lambda n: data((n, 3, 7, 6), n), ref)


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=2),
    dict(kernel_size=(3, 2, 2), strides=(1, 2, 1), padding="same", activation="relu"),
])
def test_conv3d(kwargs):
    model = Sequential([L.Conv3D(3, input_shape=(5, 6, 4, 2), **kwargs)])
    w = randomize(model, 13)
    k = kwargs

    def ref(x):
        return R.conv(x.astype("float64"), w[0], w[1], k.get("strides", 1),
                      k.get("padding", "valid"), 1, k.get("activation"))
    check_model(model, lambda n: data((n, 5, 6, 4, 2), n), ref)


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=3, depth_multiplier=1),
    dict(kernel_size=3, depth_multiplier=2, strides=2, padding="same", activation="relu"),
])
def test_separable_conv1d(kwargs):
    model = Sequential([L.SeparableConv1D(4, input_shape=(10, 3), **kwargs)])
    w = randomize(model, 14)
    k = kwargs

    def ref(x):
        return R.separable_conv(x.astype("float64"), w[0], w[1], w[2], k.get("strides", 1),
                                k.get("padding", "valid"), 1, k.get("activation"))
    check_model(model, lambda n: data((n, 10, 3), n), ref)


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=3, depth_multiplier=1),
    dict(kernel_size=(3, 2), depth_multiplier=2, strides=(2, 1), padding="same"),
    dict(kernel_size=3, dilation_rate=2, padding="same", activation="relu"),
])
def test_separable_conv2d(kwargs):
    model = Sequential([L.SeparableConv2D(5, input_shape=(8, 9, 3), **kwargs)])
    w = randomize(model, 15)
    k = kwargs

    def ref(x):
        return R.separable_conv(x.astype("float64"), w[0], w[1], w[2], k.get("strides", 1),
                                k.get("padding", "valid"), k.get("dilation_rate", 1),
                                k.get("activation"))
    check_model(model, lambda n: data((n, 8, 9, 3), n), ref)


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=3),
    dict(kernel_size=(2, 3), depth_multiplier=3, strides=2, padding="same"),
    dict(kernel_size=3, depth_multiplier=2, dilation_rate=(2, 2), activation="relu"),
])
def test_depthwise_conv2d(kwargs):
    model = Sequential([L.DepthwiseConv2D(input_shape=(9, 8, 3), **kwargs)])
    w = randomize(model, 16)
    k = kwargs

    def ref(x):
        return R.depthwise_conv(x.astype("float64"), w[0], w[1], k.get("strides", 1),
                                k.get("padding", "valid"), k.get("dilation_rate", 1),
                                k.get("activation"))
    check_model(model, lambda n: data((n, 9, 8, 3), n), ref)


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=3),
    dict(kernel_size=3, strides=2, padding="same"),
    dict(kernel_size=(4, 3), strides=(2, 3), padding="valid", activation="relu"),
])
def test_conv2d_transpose(kwargs):
    model = Sequential([L.Conv2DTranspose(4, input_shape=(5, 4, 3), **kwargs)])
    w = randomize(model, 17)
    k = kwargs

    def ref(x):
        return R.conv2d_transpose(x.astype("float64"), w[0], w[1], k.get("strides", 1),
                                  k.get("padding", "valid"), k.get("activation"))
    check_model(model, lambda n: data((n, 5, 4, 3), n), ref)


def test_locally_connected():
    inp1, inp2, inp3 = L.Input((10, 3)), L.Input((7, 6, 2)), L.Input((2, 6, 5))
    outs = [L.LocallyConnected1D(4, 3, strides=2)(inp1),
            L.LocallyConnected2D(3, (3, 2), strides=(2, 1), activation="relu")(inp2),
            L.LocallyConnected2D(2, 2, data_format="channels_first")(inp3)]
    model = Model([inp1, inp2, inp3], outs)
    w = randomize(model, 18)

    def ref(xs):
        x1, x2, x3 = (x.astype("float64") for x in xs)
        y3 = R.local_conv2d(x3.transpose(0, 2, 3, 1), w[4], None, (5, 4), (2, 2),
                            channels_first=True).transpose(0, 3, 1, 2)
        # channels_first: TensorFlow's bias_add reshapes (not transposes) the (rows, cols,
        # filters) bias to (1, filters, rows, cols)
        y3 = y3 + w[5].reshape((1, 2, 5, 4))
        return [R.local_conv1d(x1, w[0], w[1], kernel_size=3, strides=2),
                R.local_conv2d(x2, w[2], w[3], (3, 5), (3, 2), (2, 1), "relu"), y3]
    check_model(model, lambda n: [data((n, 10, 3), n), data((n, 7, 6, 2), n + 50),
                                  data((n, 2, 6, 5), n + 60)], ref)


def test_pooling():
    inp1, inp2, inp3 = L.Input((9, 3)), L.Input((7, 8, 2)), L.Input((5, 6, 4, 2))
    outs = [
        L.MaxPooling1D(2)(inp1), L.AveragePooling1D(3, strides=2, padding="same")(inp1),
        L.MaxPooling2D((2, 3), strides=(2, 2), padding="same")(inp2),
        L.AveragePooling2D((3, 2), padding="same", strides=1)(inp2),
        L.AveragePooling2D(2)(inp2),
        L.MaxPooling3D(2)(inp3), L.AveragePooling3D((2, 3, 2), padding="same")(inp3),
        L.GlobalMaxPooling1D()(inp1), L.GlobalAveragePooling1D()(inp1),
        L.GlobalMaxPooling2D()(inp2), L.GlobalAveragePooling2D()(inp2),
        L.GlobalMaxPooling3D()(inp3), L.GlobalAveragePooling3D()(inp3),
    ]
    model = Model([inp1, inp2, inp3], outs)

    def ref(xs):
        a, b, c = (x.astype("float64") for x in xs)
        return [R.pool(a, 2), R.pool(a, 3, 2, "same", "avg"),
                R.pool(b, (2, 3), (2, 2), "same"), R.pool(b, (3, 2), 1, "same", "avg"),
                R.pool(b, 2, None, "valid", "avg"),
                R.pool(c, 2), R.pool(c, (2, 3, 2), None, "same", "avg"),
                a.max(1), a.mean(1), b.max((1, 2)), b.mean((1, 2)), c.max((1, 2, 3)),
                c.mean((1, 2, 3))]
    check_model(model, lambda n: [data((n, 9, 3), n), data((n, 7, 8, 2), n + 1),
                                  data((n, 5, 6, 4, 2), n + 2)], ref)


def test_cropping_padding_upsampling():
    inp1, inp2, inp3 = L.Input((8, 3)), L.Input((6, 7, 2)), L.Input((4, 5, 3, 2))
    outs = [
        L.Cropping1D((1, 2))(inp1), L.ZeroPadding1D((2, 1))(inp1), L.UpSampling1D(3)(inp1),
        L.Cropping2D(((1, 0), (2, 1)))(inp2), L.ZeroPadding2D(((1, 2), (0, 1)))(inp2),
        L.UpSampling2D((2, 3))(inp2),
        L.Cropping3D(((1, 1), (0, 2), (1, 0)))(inp3), L.ZeroPadding3D((1, 2, 1))(inp3),
        L.UpSampling3D((2, 1, 2))(inp3),
    ]
    model = Model([inp1, inp2, inp3], outs)

    def ref(xs):
        a, b, c = (x.astype("float64") for x in xs)
        return [R.crop(a, [(1, 2)]), R.zero_pad(a, [(2, 1)]), R.upsample(a, (3,)),
                R.crop(b, [(1, 0), (2, 1)]), R.zero_pad(b, [(1, 2), (0, 1)]),
                R.upsample(b, (2, 3)),
                R.crop(c, [(1, 1), (0, 2), (1, 0)]), R.zero_pad(c, [(1, 1), (2, 2), (1, 1)]),
                R.upsample(c, (2, 1, 2))]
    check_model(model, lambda n: [data((n, 8, 3), n), data((n, 6, 7, 2), n + 1),
                                  data((n, 4, 5, 3, 2), n + 2)], ref)


def test_small_convnet_end_to_end():
    """A LeNet-like classifier: conv, batch norm, pooling, dropout, dense, softmax."""
    model = Sequential([
        L.Conv2D(4, 3, activation="relu", input_shape=(12, 12, 1)),
        L.BatchNormalization(),
        L.MaxPooling2D(2),
        L.Conv2D(6, 3, padding="same", activation="relu"),
        L.GlobalAveragePooling2D(),
        L.Dropout(0.5),
        L.Dense(3, activation="softmax"),
    ])
    w = randomize(model, 19)

    def ref(x):
        h = R.conv(x.astype("float64"), w[0], w[1], activation="relu")
        h = R.batch_norm(h, *w[2:6])
        h = R.pool(h, 2)
        h = R.conv(h, w[6], w[7], padding="same", activation="relu")
        return R.dense(h.mean((1, 2)), w[8], w[9], "softmax")
    check_model(model, lambda n: data((n, 12, 12, 1), n), ref)
