# Run once on main at e06f0d7 (the code before the fixed-structure state) to write the legacy fixtures.
import os, sys
os.environ["KERAS_BACKEND"] = "tensorflow"
import numpy as np, keras
from rln_keras import RLNCallback
out = sys.argv[1]
rng = np.random.default_rng(3)
X = rng.normal(size=(40, 6)).astype(np.float32); y = rng.normal(size=(40, 1)).astype(np.float32)
def make():
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(1)])
    m.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    return m
m = make()
cb = RLNCallback(m.layers[0], norm=1, avg_reg=-8.0, learning_rate=1e5)
m.fit(X, y, batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[cb])
state = cb.get_state()
np.savez(os.path.join(out, "keras_steps5.npz"), **state,
         **{f"weight{i}": w for i, w in enumerate(m.get_weights())})
m.fit(X, y, batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[cb])
np.savez(os.path.join(out, "keras_expected10.npz"), kernel=m.layers[0].kernel.numpy(), lambdas=cb.lambdas())
# a get_state before any update: steps 0, no prev_reg
m2 = make(); cb2 = RLNCallback(m2.layers[0]); cb2.set_model(m2); cb2.on_train_begin()
np.savez(os.path.join(out, "keras_steps0.npz"), **cb2.get_state())
print(sorted(state), sorted(cb2.get_state()))
