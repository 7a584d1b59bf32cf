// Interface names as they reach the kernel and nft (docs/config.md, "Interface names").
// The kernel (dev_valid_name, dev_get_valid_name) takes 1-15 bytes (IFNAMSIZ 16 with the NUL),
// not "." or "..", and refuses "/", ":", whitespace by its own ctype table (which counts byte
// 0xA0 as a space, so "à" = C3 A0 is refused) and "%" (a name with "%" is a template such as
// "eth%d" that the kernel fills in). nft interprets some characters even inside a quoted string:
// a trailing "*" is a wildcard ("lab*" matches lab0), a leading "@" a set reference, "$" a
// variable, "\" an escape, and a quote ends the string; its JSON parser reads a few protocol
// words as constants anywhere. natctl refuses all of these, plus control characters and any
// Unicode space, so a name means the one interface it spells.

/** Characters refused anywhere in an interface name (besides control characters and spaces). */
const refusedChars = /[/:%*@$"'`\\]/;
// eslint-disable-next-line no-control-regex
const controlChars = /[\u0000-\u001f\u007f-\u009f]/;

/** What the kernel and nft accept as an interface name, character by character (bytes are counted separately). */
export const interfaceNamePattern = /^(?!\.{1,2}$)[^\s/:%*@$"'`\\\u0000-\u001f\u007f-\u009f]{1,15}$/;

export const maxInterfaceNameBytes = 15;

/**
 * Words nft 1.0.6's JSON parser turns into constants wherever a string appears (parser_json.c,
 * is_constant): `iifname "tcp"` in a JSON batch is a datatype error ("expression has type
 * Internet protocol"), and nft's own JSON listing of such a rule cannot be loaded back. natctl
 * loads JSON, so these names could never be applied.
 */
export const nftJsonConstants: readonly string[] = ['tcp', 'udp', 'udplite', 'esp', 'ah', 'icmp', 'icmpv6', 'comp', 'dccp', 'sctp', 'redirect'];

/** Why `name` cannot be an interface name, or undefined when it can. */
export function interfaceNameProblem(name: string): string | undefined {
  if (name.length === 0) return 'is empty; an interface name has 1-15 bytes';
  const bytes = Buffer.from(name, 'utf8');
  if (bytes.length > maxInterfaceNameBytes) return `is ${bytes.length} bytes long; the kernel allows at most ${maxInterfaceNameBytes} bytes (IFNAMSIZ 16 with the terminating NUL)`;
  if (name === '.' || name === '..') return 'is "." or "..", which the kernel refuses as an interface name';
  if (/\s/.test(name) || bytes.includes(0xa0)) return 'contains whitespace (the kernel also counts byte 0xA0, as in "à", as a space)';
  if (controlChars.test(name)) return 'contains a control character';
  // A JSON escape such as "\ud800" gives half a character, which has no UTF-8 bytes at all.
  if (/\p{Surrogate}/u.test(name)) return 'contains an unpaired surrogate (not a character; no UTF-8 encoding)';
  const refused = refusedChars.exec(name)?.[0];
  if (refused !== undefined) {
    const why = refused === '/' || refused === ':' || refused === '%' ? 'the kernel refuses it in interface names' : 'nft would interpret it (wildcard, set reference, variable, escape or quote)';
    return `contains ${JSON.stringify(refused)}: ${why}`;
  }
  if (nftJsonConstants.includes(name)) return `is a word nft's JSON parser reads as a protocol constant (${nftJsonConstants.join(', ')}), so no ruleset could match an interface of that name`;
  return undefined;
}
