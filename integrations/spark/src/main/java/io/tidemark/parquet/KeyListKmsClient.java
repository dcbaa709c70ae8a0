package io.tidemark.parquet;

import java.nio.charset.StandardCharsets;
import java.util.Base64;
import java.util.Collections;
import java.util.HashMap;
import java.util.Map;
import java.util.TreeSet;
import org.apache.hadoop.conf.Configuration;
import org.apache.parquet.crypto.KeyAccessDeniedException;
import org.apache.parquet.crypto.ParquetCryptoRuntimeException;
import org.apache.parquet.crypto.TagVerificationException;
import org.apache.parquet.crypto.keytools.KeyToolkit;
import org.apache.parquet.crypto.keytools.KmsClient;

/**
 * A parquet-java {@link KmsClient} whose master keys are listed in the Hadoop configuration, so
 * Spark (through {@code PropertiesDrivenCryptoFactory}) can read Tidemark's encrypted snapshots.
 *
 * <p>Tidemark writes each file's footer key metadata as key-tools JSON (PKMT1, internal storage,
 * single wrapping) whose {@code wrappedDEK} is {@code base64(nonce || AES-GCM(dek) || tag)} under
 * the snapshot's master key, with the UTF-8 master key id as associated data: the format of
 * {@link KeyToolkit#encryptKeyLocally}. parquet-java's own client for that format, {@code
 * InMemoryKMS}, ships only in parquet-hadoop's test jar, which Spark does not bundle; this class is
 * the same idea as a small supported class.
 *
 * <p>Master keys come from {@code parquet.encryption.key.list} (in Spark: {@code
 * spark.hadoop.parquet.encryption.key.list}), InMemoryKMS's syntax: {@code "id1:base64key1,
 * id2:base64key2"}, each key 16, 24 or 32 bytes. Errors name the master key id and never include
 * key bytes (nor the base64 decoder's message, which quotes the offending character).
 */
public class KeyListKmsClient implements KmsClient {
  /** The Hadoop property that holds the master keys. */
  public static final String KEY_LIST_PROPERTY_NAME = "parquet.encryption.key.list";

  // Written once in initialize(); parquet-java then calls wrap/unwrap from any thread, so the map is
  // immutable and the methods keep no other state.
  private volatile Map<String, byte[]> masterKeys = Collections.emptyMap();

  @Override
  public void initialize(
      Configuration conf, String kmsInstanceID, String kmsInstanceURL, String accessToken) {
    // Parsed eagerly, so a mistyped entry fails the job at its first file, naming that entry.
    String[] entries = conf.getTrimmedStrings(KEY_LIST_PROPERTY_NAME);
    if (entries == null || entries.length == 0) {
      throw new ParquetCryptoRuntimeException(
          KEY_LIST_PROPERTY_NAME + " is not set: it must list the master keys as id:base64key");
    }
    Map<String, byte[]> keys = new HashMap<>();
    for (String entry : entries) {
      if (entry.isEmpty()) {
        continue; // a trailing comma
      }
      // The last ':' splits, so an id may itself contain ':' (base64 never does).
      int colon = entry.lastIndexOf(':');
      if (colon <= 0) {
        // No id to name here, and printing the entry could print a key.
        throw new ParquetCryptoRuntimeException(
            KEY_LIST_PROPERTY_NAME + " has an entry that is not id:base64key");
      }
      String id = entry.substring(0, colon).trim();
      byte[] key;
      try {
        key = Base64.getDecoder().decode(entry.substring(colon + 1).trim());
      } catch (IllegalArgumentException e) {
        // The cause is dropped on purpose: its message quotes part of the key.
        throw new ParquetCryptoRuntimeException(
            "master key '" + id + "' in " + KEY_LIST_PROPERTY_NAME + " is not valid base64");
      }
      if (key.length != 16 && key.length != 24 && key.length != 32) {
        throw new ParquetCryptoRuntimeException(
            "master key '" + id + "' in " + KEY_LIST_PROPERTY_NAME + " is " + key.length
                + " bytes; an AES key is 16, 24 or 32");
      }
      // parquet-java's AesCipher refuses an all-zero key (as a bare
      // IllegalArgumentException, deep in a task); say so here, by id.
      if (isAllZero(key)) {
        throw new ParquetCryptoRuntimeException(
            "master key '" + id + "' in " + KEY_LIST_PROPERTY_NAME + " is all zero bytes");
      }
      if (keys.put(id, key) != null) {
        throw new ParquetCryptoRuntimeException(
            "master key '" + id + "' is listed twice in " + KEY_LIST_PROPERTY_NAME);
      }
    }
    masterKeys = Collections.unmodifiableMap(keys);
  }

  @Override
  public String wrapKey(byte[] keyBytes, String masterKeyIdentifier)
      throws KeyAccessDeniedException {
    byte[] masterKey = masterKey(masterKeyIdentifier);
    return KeyToolkit.encryptKeyLocally(keyBytes, masterKey, aad(masterKeyIdentifier));
  }

  @Override
  public byte[] unwrapKey(String wrappedKey, String masterKeyIdentifier)
      throws KeyAccessDeniedException {
    byte[] masterKey = masterKey(masterKeyIdentifier);
    try {
      Base64.getDecoder().decode(wrappedKey);
    } catch (IllegalArgumentException e) {
      throw new ParquetCryptoRuntimeException(
          "the wrapped data key for master key '" + masterKeyIdentifier + "' is not valid base64");
    }
    try {
      return KeyToolkit.decryptKeyLocally(wrappedKey, masterKey, aad(masterKeyIdentifier));
    } catch (TagVerificationException e) {
      // The usual cause is a right id with the wrong key (another snapshot's, or a rotated one).
      throw new KeyAccessDeniedException(
          "the data key does not authenticate under master key '" + masterKeyIdentifier
              + "': wrong master key, or the file's key metadata was altered",
          e);
    } catch (ParquetCryptoRuntimeException e) {
      // e.g. a wrapped key too short to hold nonce and tag; the message has no key bytes.
      throw new ParquetCryptoRuntimeException(
          "cannot unwrap the data key under master key '" + masterKeyIdentifier + "': "
              + e.getMessage(),
          e);
    }
  }

  private byte[] masterKey(String id) throws KeyAccessDeniedException {
    byte[] key = masterKeys.get(id);
    if (key == null) {
      // Ids are not secret; listing the known ones shows a mismatched snapshot at a glance.
      throw new KeyAccessDeniedException(
          "master key '" + id + "' is not in " + KEY_LIST_PROPERTY_NAME + " (it lists "
              + new TreeSet<>(masterKeys.keySet()) + ")");
    }
    return key;
  }

  private static boolean isAllZero(byte[] key) {
    for (byte b : key) {
      if (b != 0) {
        return false;
      }
    }
    return true;
  }

  private static byte[] aad(String masterKeyIdentifier) {
    return masterKeyIdentifier.getBytes(StandardCharsets.UTF_8);
  }
}
