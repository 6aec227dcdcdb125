document.querySelectorAll("time[datetime]").forEach(function (el) {
  var moment = new Date(el.getAttribute("datetime"));
  if (!isNaN(moment.getTime())) {
    el.title = el.textContent;
    el.textContent = moment.toLocaleString([], {dateStyle: "medium", timeStyle: "short"});
  }
});
