// Formatting of amounts, times and addresses. Money stays BigInt from the JSON decimal string to
// the screen: never a float, so what is shown is exactly what the API said, to the last unit.

const DIGITS = /^-?\d+$/;

// A decimal string (or integer) as a BigInt; null when it is absent or not an integer.
export function toBig(value) {
  if (value === null || value === undefined) return null;
  if (typeof value === "bigint") return value;
  const text = String(value).trim();
  if (!DIGITS.test(text)) return null;
  return BigInt(text);
}

function groupThousands(digits) {
  return digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

// `units` (base units) with `decimals` as a token amount, exact: trailing zeros of the fraction
// are dropped, none of its significant digits are.
export function formatUnits(value, decimals) {
  const big = toBig(value);
  if (big === null) return "—";
  const negative = big < 0n;
  const abs = negative ? -big : big;
  const scale = 10n ** BigInt(decimals);
  const whole = abs / scale;
  let fraction = decimals > 0 ? (abs % scale).toString().padStart(decimals, "0") : "";
  fraction = fraction.replace(/0+$/, "");
  const text = groupThousands(whole.toString()) + (fraction ? "." + fraction : "");
  return (negative ? "-" : "") + text;
}

// Native wei of a chain, shown in whole native units (18 decimals on every EVM chain we run).
export function formatNative(value) {
  return formatUnits(value, 18);
}

// Gas prices read best in gwei; still exact.
export function formatGwei(value) {
  const text = formatUnits(value, 9);
  return text === "—" ? text : text + " gwei";
}

// A token amount of `chain`'s `token`, as precise as the page knows it: with the token's decimals
// and symbol once an opportunity stated them, otherwise exact base units, marked as such.
export function formatTokenAmount(value, chain, token, tokens) {
  const meta = chain && token ? tokens.get(tokenKey(chain, token)) : undefined;
  if (meta === undefined) {
    const big = toBig(value);
    // Decimals unknown: exact base units, marked so nobody reads them as whole tokens.
    return big === null ? "—" : groupThousands(big.toString()) + " base units";
  }
  const text = formatUnits(value, meta.decimals);
  return text === "—" || !meta.symbol ? text : `${text} ${meta.symbol}`;
}

// Token addresses are per chain: the same address on two chains may be two different tokens.
export function tokenKey(chain, token) {
  return `${chain}:${token.toLowerCase()}`;
}

// For charts only (a chart axis is a picture, not a number anyone acts on).
export function gweiForChart(value) {
  const big = toBig(value);
  if (big === null) return null;
  return Number(big / 1000n) / 1e6;
}

export function nativeForChart(value) {
  const big = toBig(value);
  if (big === null) return null;
  return Number(big / 10n ** 9n) / 1e9;
}

export function shortHex(hex) {
  if (!hex) return "—";
  return hex.length > 14 ? `${hex.slice(0, 8)}…${hex.slice(-4)}` : hex;
}

export function formatAge(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
  if (seconds < 1) return "<1 s";
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${Math.round(seconds / 3600)} h`;
}

export function ageOf(isoTime, now = Date.now()) {
  if (!isoTime) return null;
  const at = Date.parse(isoTime);
  return Number.isNaN(at) ? null : Math.max(0, (now - at) / 1000);
}

export function formatTime(isoTime) {
  if (!isoTime) return "—";
  const at = new Date(isoTime);
  return Number.isNaN(at.getTime()) ? "—" : at.toISOString().slice(11, 19) + "Z";
}

export function formatMs(value) {
  return value === null || value === undefined ? "—" : `${Number(value).toFixed(1)} ms`;
}
