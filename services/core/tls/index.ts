/**
 * The local certificate authority (local-ca.ts): apart from core's index.ts because it loads
 * @peculiar/x509, which commands that do not generate certificates must not wait for.
 */
export {
  createLocalCa,
  ensureLocalCertificates,
  type IssuedCertificate,
  LOCAL_ROLES,
  type LocalCa,
  type LocalNames,
  type LocalRole,
  localTlsFiles,
  readLocalCertificates,
} from './local-ca.js';
