// The header every signed-in page shares: navigation and log-out.
const NAV = [
  ["/console/", "Calls"],
  ["/console/talk", "Talk to the agent"],
];

export function renderHeader() {
  const header = document.createElement("header");
  header.className = "top";
  const brand = document.createElement("span");
  brand.className = "brand";
  brand.textContent = "voicebot console";
  const nav = document.createElement("nav");
  for (const [href, text] of NAV) {
    const link = document.createElement("a");
    link.href = href;
    link.textContent = text;
    if (location.pathname === href) link.className = "here";
    nav.append(link);
  }
  const logout = document.createElement("button");
  logout.textContent = "Log out";
  logout.addEventListener("click", async () => {
    await fetch("/console/logout", { method: "POST", credentials: "same-origin" });
    location.assign("/console/login");
  });
  header.append(brand, nav, logout);
  document.body.prepend(header);
}
