{
  "targets": [
    {
      "target_name": "natctl_nft",
      "sources": ["src/natctl_nft.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_DISABLE_CPP_EXCEPTIONS",
        "NATCTL_LIBNFTABLES_VERSION=<!(node -p \"process.env.NATCTL_LIBNFTABLES_VERSION || 'unknown'\")"
      ],
      "cflags_cc": ["-std=c++17", "-pthread", "-Wall", "-Wextra"],
      "ldflags": ["-pthread"],
      "libraries": ["-lnftables"]
    }
  ]
}
