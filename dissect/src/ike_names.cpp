// Names of the ISAKMP / IKE registries (IANA "Internet Key Exchange (IKE)
// Attributes", "Internet Key Exchange Version 2 (IKEv2) Parameters", "ISAKMP
// identifiers", "Magic Numbers for ISAKMP Protocol").
#include <fmt/format.h>

#include <array>
#include <cstring>

#include "ipsentry/dissect/ike.hpp"

namespace ipsentry::dissect::ike {

namespace {

struct Named {
  std::uint32_t value;
  const char* name;
};

template <std::size_t N>
const char* find(const std::array<Named, N>& table, std::uint32_t v) noexcept {
  for (const auto& e : table) {
    if (e.value == v) return e.name;
  }
  return nullptr;
}

constexpr std::array<Named, 43> kPayloads{{
    {0, "None"},
    {1, "Security Association"},
    {2, "Proposal"},
    {3, "Transform"},
    {4, "Key Exchange"},
    {5, "Identification"},
    {6, "Certificate"},
    {7, "Certificate Request"},
    {8, "Hash"},
    {9, "Signature"},
    {10, "Nonce"},
    {11, "Notification"},
    {12, "Delete"},
    {13, "Vendor ID"},
    {14, "Attributes (Mode Config / XAUTH)"},
    {15, "SA KEK (GDOI)"},
    {16, "SA TEK (GDOI)"},
    {17, "Key Download (GDOI)"},
    {18, "Sequence Number (GDOI)"},
    {19, "Proof of Possession (GDOI)"},
    {20, "NAT Discovery"},
    {21, "NAT Original Address"},
    {22, "GAP (GDOI)"},
    {130, "NAT Discovery (draft)"},
    {131, "NAT Original Address (draft)"},
    {132, "Fragment (Cisco/strongSwan)"},
    {33, "Security Association"},
    {34, "Key Exchange"},
    {35, "Identification - Initiator"},
    {36, "Identification - Responder"},
    {37, "Certificate"},
    {38, "Certificate Request"},
    {39, "Authentication"},
    {40, "Nonce"},
    {41, "Notify"},
    {42, "Delete"},
    {43, "Vendor ID"},
    {44, "Traffic Selector - Initiator"},
    {45, "Traffic Selector - Responder"},
    {46, "Encrypted and Authenticated"},
    {47, "Configuration"},
    {48, "Extensible Authentication"},
    {53, "Encrypted and Authenticated Fragment"},
}};

constexpr std::array<Named, 41> kAbbrev{{
    {1, "SA"},     {2, "P"},      {3, "T"},      {4, "KE"},     {5, "ID"},    {6, "CERT"},   {7, "CR"},
    {8, "HASH"},   {9, "SIG"},    {10, "NONCE"}, {11, "N"},     {12, "D"},    {13, "VID"},   {14, "ATTR"},
    {15, "SAK"},   {16, "SAT"},   {17, "KD"},    {18, "SEQ"},   {19, "POP"},  {20, "NAT-D"}, {21, "NAT-OA"},
    {130, "NAT-D"}, {131, "NAT-OA"}, {132, "FRAG"}, {33, "SA"},  {34, "KE"},   {35, "IDi"},   {36, "IDr"},
    {37, "CERT"},  {38, "CERTREQ"}, {39, "AUTH"}, {40, "No"},   {41, "N"},    {42, "D"},     {43, "V"},
    {44, "TSi"},   {45, "TSr"},   {46, "SK"},    {47, "CP"},    {48, "EAP"},  {53, "SKF"},
}};

constexpr std::array<Named, 16> kExchanges{{
    {0, "None"},
    {1, "Base"},
    {2, "Main Mode"},
    {3, "Authentication Only"},
    {4, "Aggressive Mode"},
    {5, "Informational"},
    {6, "Transaction (Mode Config)"},
    {32, "Quick Mode"},
    {33, "New Group Mode"},
    {34, "IKE_SA_INIT"},
    {35, "IKE_AUTH"},
    {36, "CREATE_CHILD_SA"},
    {37, "INFORMATIONAL"},
    {38, "IKE_SESSION_RESUME"},
    {43, "IKE_INTERMEDIATE"},
    {44, "IKE_FOLLOWUP_KE"},
}};

constexpr std::array<Named, 39> kV1Notify{{
    {1, "INVALID-PAYLOAD-TYPE"},
    {2, "DOI-NOT-SUPPORTED"},
    {3, "SITUATION-NOT-SUPPORTED"},
    {4, "INVALID-COOKIE"},
    {5, "INVALID-MAJOR-VERSION"},
    {6, "INVALID-MINOR-VERSION"},
    {7, "INVALID-EXCHANGE-TYPE"},
    {8, "INVALID-FLAGS"},
    {9, "INVALID-MESSAGE-ID"},
    {10, "INVALID-PROTOCOL-ID"},
    {11, "INVALID-SPI"},
    {12, "INVALID-TRANSFORM-ID"},
    {13, "ATTRIBUTES-NOT-SUPPORTED"},
    {14, "NO-PROPOSAL-CHOSEN"},
    {15, "BAD-PROPOSAL-SYNTAX"},
    {16, "PAYLOAD-MALFORMED"},
    {17, "INVALID-KEY-INFORMATION"},
    {18, "INVALID-ID-INFORMATION"},
    {19, "INVALID-CERT-ENCODING"},
    {20, "INVALID-CERTIFICATE"},
    {21, "CERT-TYPE-UNSUPPORTED"},
    {22, "INVALID-CERT-AUTHORITY"},
    {23, "INVALID-HASH-INFORMATION"},
    {24, "AUTHENTICATION-FAILED"},
    {25, "INVALID-SIGNATURE"},
    {26, "ADDRESS-NOTIFICATION"},
    {27, "NOTIFY-SA-LIFETIME"},
    {28, "CERTIFICATE-UNAVAILABLE"},
    {29, "UNSUPPORTED-EXCHANGE-TYPE"},
    {30, "UNEQUAL-PAYLOAD-LENGTHS"},
    {16384, "CONNECTED"},
    {24576, "RESPONDER-LIFETIME"},
    {24577, "REPLAY-STATUS"},
    {24578, "INITIAL-CONTACT"},
    {36136, "R-U-THERE"},
    {36137, "R-U-THERE-ACK"},
    {40501, "CISCO-LOAD-BALANCE"},
    {40503, "CISCO-HEARTBEAT"},
    {24579, "CISCO-UNITY"},
}};

constexpr std::array<Named, 86> kV2Notify{{
    {1, "UNSUPPORTED_CRITICAL_PAYLOAD"},
    {4, "INVALID_IKE_SPI"},
    {5, "INVALID_MAJOR_VERSION"},
    {7, "INVALID_SYNTAX"},
    {9, "INVALID_MESSAGE_ID"},
    {11, "INVALID_SPI"},
    {14, "NO_PROPOSAL_CHOSEN"},
    {17, "INVALID_KE_PAYLOAD"},
    {24, "AUTHENTICATION_FAILED"},
    {34, "SINGLE_PAIR_REQUIRED"},
    {35, "NO_ADDITIONAL_SAS"},
    {36, "INTERNAL_ADDRESS_FAILURE"},
    {37, "FAILED_CP_REQUIRED"},
    {38, "TS_UNACCEPTABLE"},
    {39, "INVALID_SELECTORS"},
    {40, "UNACCEPTABLE_ADDRESSES"},
    {41, "UNEXPECTED_NAT_DETECTED"},
    {42, "USE_ASSIGNED_HoA"},
    {43, "TEMPORARY_FAILURE"},
    {44, "CHILD_SA_NOT_FOUND"},
    {45, "INVALID_GROUP_ID"},
    {46, "AUTHORIZATION_FAILED"},
    {47, "STATE_NOT_FOUND"},
    {48, "TS_MAX_QUEUE"},
    {16384, "INITIAL_CONTACT"},
    {16385, "SET_WINDOW_SIZE"},
    {16386, "ADDITIONAL_TS_POSSIBLE"},
    {16387, "IPCOMP_SUPPORTED"},
    {16388, "NAT_DETECTION_SOURCE_IP"},
    {16389, "NAT_DETECTION_DESTINATION_IP"},
    {16390, "COOKIE"},
    {16391, "USE_TRANSPORT_MODE"},
    {16392, "HTTP_CERT_LOOKUP_SUPPORTED"},
    {16393, "REKEY_SA"},
    {16394, "ESP_TFC_PADDING_NOT_SUPPORTED"},
    {16395, "NON_FIRST_FRAGMENTS_ALSO"},
    {16396, "MOBIKE_SUPPORTED"},
    {16397, "ADDITIONAL_IP4_ADDRESS"},
    {16398, "ADDITIONAL_IP6_ADDRESS"},
    {16399, "NO_ADDITIONAL_ADDRESSES"},
    {16400, "UPDATE_SA_ADDRESSES"},
    {16401, "COOKIE2"},
    {16402, "NO_NATS_ALLOWED"},
    {16403, "AUTH_LIFETIME"},
    {16404, "MULTIPLE_AUTH_SUPPORTED"},
    {16405, "ANOTHER_AUTH_FOLLOWS"},
    {16406, "REDIRECT_SUPPORTED"},
    {16407, "REDIRECT"},
    {16408, "REDIRECTED_FROM"},
    {16409, "TICKET_LT_OPAQUE"},
    {16410, "TICKET_REQUEST"},
    {16411, "TICKET_ACK"},
    {16412, "TICKET_NACK"},
    {16413, "TICKET_OPAQUE"},
    {16414, "LINK_ID"},
    {16415, "USE_WESP_MODE"},
    {16416, "ROHC_SUPPORTED"},
    {16417, "EAP_ONLY_AUTHENTICATION"},
    {16418, "CHILDLESS_IKEV2_SUPPORTED"},
    {16419, "QUICK_CRASH_DETECTION"},
    {16420, "IKEV2_MESSAGE_ID_SYNC_SUPPORTED"},
    {16421, "IPSEC_REPLAY_COUNTER_SYNC_SUPPORTED"},
    {16422, "IKEV2_MESSAGE_ID_SYNC"},
    {16423, "IPSEC_REPLAY_COUNTER_SYNC"},
    {16424, "SECURE_PASSWORD_METHODS"},
    {16425, "PSK_PERSIST"},
    {16426, "PSK_CONFIRM"},
    {16427, "ERX_SUPPORTED"},
    {16428, "IFOM_CAPABILITY"},
    {16429, "SENDER_REQUEST_ID"},
    {16430, "IKEV2_FRAGMENTATION_SUPPORTED"},
    {16431, "SIGNATURE_HASH_ALGORITHMS"},
    {16432, "CLONE_IKE_SA_SUPPORTED"},
    {16433, "CLONE_IKE_SA"},
    {16434, "PUZZLE"},
    {16435, "USE_PPK"},
    {16436, "PPK_IDENTITY"},
    {16437, "NO_PPK_AUTH"},
    {16438, "INTERMEDIATE_EXCHANGE_SUPPORTED"},
    {16439, "IP4_ALLOWED"},
    {16440, "IP6_ALLOWED"},
    {16441, "ADDITIONAL_KEY_EXCHANGE"},
    {16442, "USE_AGGFRAG"},
    {16443, "SUPPORTED_AUTH_METHODS"},
    {16444, "SA_RESOURCE_INFO"},
    {16445, "USE_PPK_INT"},
}};

constexpr std::array<Named, 33> kV2Encr{{
    {1, "DES_IV64"},          {2, "DES"},           {3, "3DES"},         {4, "RC5"},
    {5, "IDEA"},              {6, "CAST"},          {7, "BLOWFISH"},     {8, "3IDEA"},
    {9, "DES_IV32"},          {11, "NULL"},         {12, "AES_CBC"},     {13, "AES_CTR"},
    {14, "AES_CCM_8"},        {15, "AES_CCM_12"},   {16, "AES_CCM_16"},  {18, "AES_GCM_8"},
    {19, "AES_GCM_12"},       {20, "AES_GCM_16"},   {21, "NULL_AUTH_AES_GMAC"},
    {23, "CAMELLIA_CBC"},     {24, "CAMELLIA_CTR"}, {25, "CAMELLIA_CCM_8"}, {26, "CAMELLIA_CCM_12"},
    {27, "CAMELLIA_CCM_16"},  {28, "CHACHA20_POLY1305"}, {29, "AES_CCM_8_IIV"}, {30, "AES_GCM_16_IIV"},
    {31, "CHACHA20_POLY1305_IIV"}, {32, "KUZNYECHIK_MGM_KTREE"}, {33, "MAGMA_MGM_KTREE"},
    {34, "KUZNYECHIK_MGM_MAC_KTREE"}, {35, "MAGMA_MGM_MAC_KTREE"}, {0, "RESERVED"},
}};

constexpr std::array<Named, 9> kV2Prf{{
    {1, "PRF_HMAC_MD5"},
    {2, "PRF_HMAC_SHA1"},
    {3, "PRF_HMAC_TIGER"},
    {4, "PRF_AES128_XCBC"},
    {5, "PRF_HMAC_SHA2_256"},
    {6, "PRF_HMAC_SHA2_384"},
    {7, "PRF_HMAC_SHA2_512"},
    {8, "PRF_AES128_CMAC"},
    {9, "PRF_HMAC_STREEBOG_512"},
}};

constexpr std::array<Named, 15> kV2Integ{{
    {0, "NONE"},
    {1, "HMAC_MD5_96"},
    {2, "HMAC_SHA1_96"},
    {3, "DES_MAC"},
    {4, "KPDK_MD5"},
    {5, "AES_XCBC_96"},
    {6, "HMAC_MD5_128"},
    {7, "HMAC_SHA1_160"},
    {8, "AES_CMAC_96"},
    {9, "AES_128_GMAC"},
    {10, "AES_192_GMAC"},
    {11, "AES_256_GMAC"},
    {12, "HMAC_SHA2_256_128"},
    {13, "HMAC_SHA2_384_192"},
    {14, "HMAC_SHA2_512_256"},
}};

constexpr std::array<Named, 36> kGroups{{
    {0, "NONE"},
    {1, "MODP_768"},
    {2, "MODP_1024"},
    {5, "MODP_1536"},
    {14, "MODP_2048"},
    {15, "MODP_3072"},
    {16, "MODP_4096"},
    {17, "MODP_6144"},
    {18, "MODP_8192"},
    {19, "ECP_256"},
    {20, "ECP_384"},
    {21, "ECP_521"},
    {22, "MODP_1024_160"},
    {23, "MODP_2048_224"},
    {24, "MODP_2048_256"},
    {25, "ECP_192"},
    {26, "ECP_224"},
    {27, "ECP_224_BP"},
    {28, "ECP_256_BP"},
    {29, "ECP_384_BP"},
    {30, "ECP_512_BP"},
    {31, "CURVE_25519"},
    {32, "CURVE_448"},
    {33, "GOST3410_2012_256"},
    {34, "GOST3410_2012_512"},
    {35, "ML_KEM_512"},
    {36, "ML_KEM_768"},
    {37, "ML_KEM_1024"},
    {3, "EC2N_155"},
    {4, "EC2N_185"},
    {6, "EC2N_163"},
    {7, "EC2N_163"},
    {8, "EC2N_283"},
    {9, "EC2N_283"},
    {10, "EC2N_409"},
    {11, "EC2N_409"},
}};

// IKEv1 phase 1 attribute classes (RFC 2409 appendix A).
constexpr std::array<Named, 16> kV1P1Attr{{
    {1, "Encryption Algorithm"},
    {2, "Hash Algorithm"},
    {3, "Authentication Method"},
    {4, "Group Description"},
    {5, "Group Type"},
    {6, "Group Prime/Irreducible Polynomial"},
    {7, "Group Generator One"},
    {8, "Group Generator Two"},
    {9, "Group Curve A"},
    {10, "Group Curve B"},
    {11, "Life Type"},
    {12, "Life Duration"},
    {13, "PRF"},
    {14, "Key Length"},
    {15, "Field Size"},
    {16, "Group Order"},
}};

// IPsec DOI SA attributes (RFC 2407 section 4.5).
constexpr std::array<Named, 11> kV1P2Attr{{
    {1, "SA Life Type"},
    {2, "SA Life Duration"},
    {3, "Group Description"},
    {4, "Encapsulation Mode"},
    {5, "Authentication Algorithm"},
    {6, "Key Length"},
    {7, "Key Rounds"},
    {8, "Compress Dictionary Size"},
    {9, "Compress Private Algorithm"},
    {10, "ECN Tunnel"},
    {11, "Extended (64-bit) Sequence Number"},
}};

constexpr std::array<Named, 8> kV1Encr{{
    {1, "DES-CBC"},
    {2, "IDEA-CBC"},
    {3, "Blowfish-CBC"},
    {4, "RC5-R16-B64-CBC"},
    {5, "3DES-CBC"},
    {6, "CAST-CBC"},
    {7, "AES-CBC"},
    {8, "CAMELLIA-CBC"},
}};

constexpr std::array<Named, 6> kV1Hash{{
    {1, "MD5"},
    {2, "SHA"},
    {3, "Tiger"},
    {4, "SHA2-256"},
    {5, "SHA2-384"},
    {6, "SHA2-512"},
}};

// RFC 2409, draft-ietf-ipsec-isakmp-hybrid-auth and the XAUTH draft. Windows
// puts its Kerberos (GSS-API) authentication in the private range too.
constexpr std::array<Named, 22> kV1AuthMethod{{
    {1, "pre-shared key"},
    {2, "DSS signatures"},
    {3, "RSA signatures"},
    {4, "RSA encryption"},
    {5, "revised RSA encryption"},
    {6, "ElGamal encryption"},
    {7, "revised ElGamal encryption"},
    {8, "ECDSA signatures"},
    {9, "ECDSA SHA-256 P-256"},
    {10, "ECDSA SHA-384 P-384"},
    {11, "ECDSA SHA-512 P-521"},
    {64221, "HybridInitRSA"},
    {64222, "HybridRespRSA"},
    {64223, "HybridInitDSS"},
    {64224, "HybridRespDSS"},
    {65001, "XAUTHInitPreShared / Kerberos GSS-API (Windows)"},
    {65002, "XAUTHRespPreShared"},
    {65003, "XAUTHInitDSS"},
    {65004, "XAUTHRespDSS"},
    {65005, "XAUTHInitRSA"},
    {65006, "XAUTHRespRSA"},
    {65007, "XAUTHInitRSAEncryption"},
}};

constexpr std::array<Named, 8> kV1EncapMode{{
    {1, "Tunnel"},
    {2, "Transport"},
    {3, "UDP-Encapsulated-Tunnel"},
    {4, "UDP-Encapsulated-Transport"},
    {61443, "UDP-Encapsulated-Tunnel (draft)"},
    {61444, "UDP-Encapsulated-Transport (draft)"},
    {0, "reserved"},
    {5, "unassigned"},
}};

constexpr std::array<Named, 13> kV1AuthAlg{{
    {1, "HMAC-MD5"},
    {2, "HMAC-SHA"},
    {3, "DES-MAC"},
    {4, "KPDK"},
    {5, "HMAC-SHA2-256"},
    {6, "HMAC-SHA2-384"},
    {7, "HMAC-SHA2-512"},
    {8, "HMAC-RIPEMD"},
    {9, "AES-XCBC-MAC"},
    {10, "SIG-RSA"},
    {11, "AES-128-GMAC"},
    {12, "AES-192-GMAC"},
    {13, "AES-256-GMAC"},
}};

constexpr std::array<Named, 23> kV1EspId{{
    {1, "DES-IV64"},   {2, "DES"},        {3, "3DES"},       {4, "RC5"},         {5, "IDEA"},
    {6, "CAST"},       {7, "BLOWFISH"},   {8, "3IDEA"},      {9, "DES-IV32"},    {10, "RC4"},
    {11, "NULL"},      {12, "AES-CBC"},   {13, "AES-CTR"},   {14, "AES-CCM-8"},  {15, "AES-CCM-12"},
    {16, "AES-CCM-16"}, {18, "AES-GCM-8"}, {19, "AES-GCM-12"}, {20, "AES-GCM-16"}, {21, "SEED-CBC"},
    {22, "CAMELLIA-CBC"}, {23, "NULL-AES-GMAC"}, {249, "SM4-CBC"},
}};

constexpr std::array<Named, 11> kV1AhId{{
    {2, "MD5"},
    {3, "SHA"},
    {4, "DES"},
    {5, "SHA2-256"},
    {6, "SHA2-384"},
    {7, "SHA2-512"},
    {8, "RIPEMD"},
    {9, "AES-XCBC-MAC"},
    {11, "AES-128-GMAC"},
    {12, "AES-192-GMAC"},
    {13, "AES-256-GMAC"},
}};

constexpr std::array<Named, 14> kIdV1{{
    {1, "IPV4_ADDR"},
    {2, "FQDN"},
    {3, "USER_FQDN"},
    {4, "IPV4_ADDR_SUBNET"},
    {5, "IPV6_ADDR"},
    {6, "IPV6_ADDR_SUBNET"},
    {7, "IPV4_ADDR_RANGE"},
    {8, "IPV6_ADDR_RANGE"},
    {9, "DER_ASN1_DN"},
    {10, "DER_ASN1_GN"},
    {11, "KEY_ID"},
    {12, "LIST"},
    {13, "FC_NAME"},
    {14, "NULL"},
}};

constexpr std::array<Named, 9> kIdV2{{
    {1, "ID_IPV4_ADDR"},
    {2, "ID_FQDN"},
    {3, "ID_RFC822_ADDR"},
    {5, "ID_IPV6_ADDR"},
    {9, "ID_DER_ASN1_DN"},
    {10, "ID_DER_ASN1_GN"},
    {11, "ID_KEY_ID"},
    {12, "ID_FC_NAME"},
    {13, "ID_NULL"},
}};

constexpr std::array<Named, 9> kV2Auth{{
    {1, "RSA Digital Signature"},
    {2, "Shared Key Message Integrity Code"},
    {3, "DSS Digital Signature"},
    {9, "ECDSA with SHA-256 on the P-256 curve"},
    {10, "ECDSA with SHA-384 on the P-384 curve"},
    {11, "ECDSA with SHA-512 on the P-521 curve"},
    {12, "Generic Secure Password Authentication Method"},
    {13, "NULL Authentication"},
    {14, "Digital Signature"},
}};

constexpr std::array<Named, 15> kCertEnc{{
    {1, "PKCS #7 wrapped X.509 certificate"},
    {2, "PGP Certificate"},
    {3, "DNS Signed Key"},
    {4, "X.509 Certificate - Signature"},
    {5, "X.509 Certificate - Key Exchange"},
    {6, "Kerberos Tokens"},
    {7, "Certificate Revocation List (CRL)"},
    {8, "Authority Revocation List (ARL)"},
    {9, "SPKI Certificate"},
    {10, "X.509 Certificate - Attribute"},
    {11, "Raw RSA Key"},
    {12, "Hash and URL of X.509 certificate"},
    {13, "Hash and URL of X.509 bundle"},
    {14, "OCSP Content"},
    {15, "Raw Public Key"},
}};

struct Vid {
  const char* hex;  // prefix match on these bytes
  const char* name;
};

constexpr std::array<Vid, 30> kVendorIds{{
    {"4a131c81070358455c5728f20e95452f", "RFC 3947 NAT-T"},
    {"4485152d18b6bbcd0be8a8469579ddcc", "draft-ietf-ipsec-nat-t-ike-00"},
    {"16f6ca16e4a4066d83821a0f0aeaa862", "draft-ietf-ipsec-nat-t-ike-01"},
    {"cd60464335df21f87cfdb2fc68b6a448", "draft-ietf-ipsec-nat-t-ike-02"},
    {"90cb80913ebb696e086381b5ec427b1f", "draft-ietf-ipsec-nat-t-ike-02\\n"},
    {"7d9419a65310ca6f2c179d9215529d56", "draft-ietf-ipsec-nat-t-ike-03"},
    {"9909b64eed937c6573de52ace952fa6b", "draft-ietf-ipsec-nat-t-ike-04"},
    {"80d0bb3def54565ee84645d4c85ce3ee", "draft-ietf-ipsec-nat-t-ike-05"},
    {"4d1e0e136deafa34c4f3ea9f02ec7285", "draft-ietf-ipsec-nat-t-ike-06"},
    {"439b59f8ba676c4c7737ae22eab8f582", "draft-ietf-ipsec-nat-t-ike-07"},
    {"8f8d83826d246b6fc7a8a6a428c11de8", "draft-ietf-ipsec-nat-t-ike-08"},
    {"42ea5b6f898d9773a575df26e7dd19e1", "draft-ietf-ipsec-nat-t-ike-09"},
    {"4df37928e9fc4fd1b3262170d515c662", "draft-ietf-ipsec-nat-t-ike"},
    {"afcad71368a1f1c96b8696fc77570100", "RFC 3706 Dead Peer Detection"},
    {"09002689dfd6b712", "XAUTH"},
    {"1e2b516905991c7d7c96fcbfb587e46100000002", "Microsoft Windows 2000"},
    {"1e2b516905991c7d7c96fcbfb587e46100000003", "Microsoft Windows XP"},
    {"1e2b516905991c7d7c96fcbfb587e46100000004", "Microsoft Windows Server 2003"},
    {"1e2b516905991c7d7c96fcbfb587e46100000005", "Microsoft Windows Vista"},
    {"1e2b516905991c7d7c96fcbfb587e46100000006", "Microsoft Windows Server 2008"},
    {"1e2b516905991c7d7c96fcbfb587e46100000007", "Microsoft Windows 7"},
    {"1e2b516905991c7d7c96fcbfb587e46100000008", "Microsoft Windows Server 2008 R2"},
    {"1e2b516905991c7d7c96fcbfb587e46100000009", "Microsoft Windows 8 or later"},
    {"1e2b516905991c7d7c96fcbfb587e461", "Microsoft (MS NT5 ISAKMPOAKLEY)"},
    {"fb1de3cdf341b7ea16b7e5be0855f120", "Microsoft MS-Negotiation Discovery Capable"},
    {"26244d38eddb61b3172a36e3d0cfb819", "Microsoft Vid-Initial-Contact"},
    {"e3a5966a76379fe707228231e5ce8652", "Microsoft IKE CGA version 1"},
    {"882fe56d6fd20dbc2251613b2ebe5beb", "strongSwan"},
    {"4048b7d56ebce88525e7de7f00d6c2d3", "IKE fragmentation (Cisco/strongSwan)"},
    {"12f5f28c457168a9702d9fe274cc", "Cisco Unity"},
}};

int hexval(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  return c - 'a' + 10;
}

}  // namespace

const char* payload_name(std::uint8_t type) noexcept { return find(kPayloads, type); }
const char* payload_abbrev(std::uint8_t type) noexcept { return find(kAbbrev, type); }
const char* exchange_name(std::uint8_t type) noexcept { return find(kExchanges, type); }
const char* v1_notify_name(std::uint16_t type) noexcept { return find(kV1Notify, type); }
const char* v2_notify_name(std::uint16_t type) noexcept { return find(kV2Notify, type); }

const char* v2_transform_type_name(std::uint8_t type) noexcept {
  switch (type) {
    case 1: return "ENCR";
    case 2: return "PRF";
    case 3: return "INTEG";
    case 4: return "KE";
    case 5: return "ESN";
    default: return type >= 6 && type <= 12 ? "ADDKE" : nullptr;
  }
}

const char* v2_transform_id_name(std::uint8_t type, std::uint16_t id) noexcept {
  switch (type) {
    case 1: return find(kV2Encr, id);
    case 2: return find(kV2Prf, id);
    case 3: return find(kV2Integ, id);
    case 5: return id == 0 ? "NO_ESN" : id == 1 ? "ESN" : nullptr;
    default: return type == 4 || (type >= 6 && type <= 12) ? find(kGroups, id) : nullptr;
  }
}

const char* v1_attribute_name(bool phase2, std::uint16_t type) noexcept {
  if (phase2) {
    if (type >= 16520 && type <= 16531) {
      static constexpr const char* kXauth[] = {"XAUTH-TYPE",   "XAUTH-USER-NAME", "XAUTH-USER-PASSWORD",
                                               "XAUTH-PASSCODE", "XAUTH-MESSAGE", "XAUTH-CHALLENGE",
                                               "XAUTH-DOMAIN", "XAUTH-STATUS",    "XAUTH-NEXT-PIN",
                                               "XAUTH-ANSWER", "",                ""};
      return kXauth[type - 16520][0] != '\0' ? kXauth[type - 16520] : nullptr;
    }
    return find(kV1P2Attr, type);
  }
  return find(kV1P1Attr, type);
}

const char* v1_attribute_value_name(bool phase2, std::uint16_t type, std::uint32_t value) noexcept {
  if (phase2) {
    switch (type) {
      case 1: return value == 1 ? "seconds" : value == 2 ? "kilobytes" : nullptr;
      case 3: return find(kGroups, value);
      case 4: return find(kV1EncapMode, value);
      case 5: return find(kV1AuthAlg, value);
      default: return nullptr;
    }
  }
  switch (type) {
    case 1: return find(kV1Encr, value);
    case 2: return find(kV1Hash, value);
    case 3: return find(kV1AuthMethod, value);
    case 4: return find(kGroups, value);
    case 5: return value == 1 ? "MODP" : value == 2 ? "ECP" : value == 3 ? "EC2N" : nullptr;
    case 11: return value == 1 ? "seconds" : value == 2 ? "kilobytes" : nullptr;
    default: return nullptr;
  }
}

const char* v1_transform_id_name(std::uint8_t protocol, std::uint16_t id) noexcept {
  switch (protocol) {
    case 1: return id == 1 ? "KEY_IKE" : nullptr;
    case 2: return find(kV1AhId, id);
    case 3: return find(kV1EspId, id);
    case 4: return id == 1 ? "IPCOMP_OUI" : id == 2 ? "IPCOMP_DEFLATE" : id == 3 ? "IPCOMP_LZS" : nullptr;
    default: return nullptr;
  }
}

const char* id_type_name(bool v2, std::uint8_t type) noexcept { return v2 ? find(kIdV2, type) : find(kIdV1, type); }

const char* protocol_id_name(std::uint8_t id) noexcept {
  switch (id) {
    case 1: return "ISAKMP";
    case 2: return "AH";
    case 3: return "ESP";
    case 4: return "IPCOMP";
    case 5: return "GIGABEAM_RADIO";
    default: return nullptr;
  }
}

const char* v2_auth_method_name(std::uint8_t m) noexcept { return find(kV2Auth, m); }
const char* cert_encoding_name(std::uint8_t e) noexcept { return find(kCertEnc, e); }
const char* dh_group_name(std::uint16_t g) noexcept { return find(kGroups, g); }

std::optional<std::string> vendor_id_name(Bytes vid) {
  for (const auto& v : kVendorIds) {
    const std::size_t n = std::strlen(v.hex) / 2;
    if (vid.size() < n) continue;
    bool same = true;
    for (std::size_t i = 0; i < n && same; ++i) {
      same = vid[i] == static_cast<std::uint8_t>(hexval(v.hex[2 * i]) * 16 + hexval(v.hex[2 * i + 1]));
    }
    if (!same) continue;
    // Openswan/strongSwan append version bytes; name only the exact ones
    // plainly and say when something follows.
    if (vid.size() == n) return std::string(v.name);
    return fmt::format("{} (+{} bytes)", v.name, vid.size() - n);
  }
  // Openswan/Libreswan vendor IDs start with "OE" and carry printable text.
  if (vid.size() >= 4 && vid[0] == 'O' && vid[1] == 'E') return std::string("Openswan/Libreswan");
  return std::nullopt;
}

std::string notify_str(bool v2, std::uint16_t type) {
  const char* n = v2 ? v2_notify_name(type) : v1_notify_name(type);
  if (n != nullptr) return n;
  if (v2 && type >= 40960) return fmt::format("private-status-{}", type);
  if (v2 && type >= 8192 && type < 16384) return fmt::format("private-error-{}", type);
  return fmt::format("notify-type-{}", type);
}

}  // namespace ipsentry::dissect::ike
